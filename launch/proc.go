package launch

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// commandTimeout bounds every short command (squeue, scontrol, ssh -G, a version check): a
// cluster tool that hangs must not hang the run.
const commandTimeout = 30 * time.Second

// cleanTimeout bounds removing a copied binary from the nodes after the run: a node that never
// came back cannot be reached, and the run has ended.
const cleanTimeout = 5 * time.Second

// runTool runs a short command with env and returns its stdout; a failure carries the last line
// of its stderr.
func runTool(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Dir = "/"
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", name, err, lastLine(stderr.String()))
	}
	return stdout.String(), nil
}

// lastLine returns the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Sum returns the hex SHA-256 of a file: how a node's copy of the binary is told to be
// ours.
func Sum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SumLine is what `lockprobe version -sum` prints as its last line: the check that a node's
// binary is this one.
func SumLine(sum string) string { return "sha256:" + sum }

// proc is one long-running process a launcher started (srun, an ssh session): its output is
// read line by line into a callback, its end is a channel.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

// startProc starts cmd in a process group of its own (a terminal's Ctrl-C reaches the
// controller only, which ends what it started in order) that gets SIGTERM if this process dies,
// and feeds every line it writes to onLine.
func startProc(cmd *exec.Cmd, onLine func(string)) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	w.Close()
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	var read sync.WaitGroup
	read.Add(1)
	go func() {
		defer read.Done()
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			onLine(sc.Text())
		}
	}()
	go func() {
		// Every line is read before the end is told: the failure lines name the cause.
		read.Wait()
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// kill SIGKILLs the process's group.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// exitCode returns the process's exit status, -1 when it died of a signal or did not run.
func (p *proc) exitCode() int {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// waitOrKill waits for the process until ctx ends, then kills its group and waits a little
// more.
func (p *proc) waitOrKill(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
	}
	p.kill()
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.cmd.Path, p.cmd.Process.Pid)
	}
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return l
}
