// Package lptest helps end-to-end tests and benchmarks run lockprobe as users do: it builds the
// binary once and finds the locker processes a run may have left behind. Lockers must be real
// processes; every package that starts them shares these two chores.
package lptest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Package is the import path of the lockprobe command.
const Package = "github.com/lockprobe/lockprobe/cmd/lockprobe"

// Build builds pkg (an import path or a relative directory) into dir/name and returns the
// binary's path; tags are build tags. Binaries are static, as `make build` makes them. It
// gives up after five minutes.
func Build(dir, name, pkg string, tags ...string) (string, error) {
	out := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"build", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", pkg, err, msg)
	}
	return out, nil
}

// LockerBinary is the locker build's name beside lockprobe (cmd/lockprobe/lockerbin.go's
// lockerBinary; a test package cannot import a command).
const LockerBinary = "lockprobe-locker"

// BuildLockprobe builds lockprobe as `make build` does — dir/lockprobe and beside it the locker
// build, dir/lockprobe-locker, which run starts this host's lockers from — and returns the
// path of lockprobe. pkg is lockprobe's package (Package, or "." from its own folder).
func BuildLockprobe(dir, pkg string) (string, error) {
	if _, err := Build(dir, LockerBinary, pkg, "lockeronly"); err != nil {
		return "", err
	}
	return Build(dir, "lockprobe", pkg)
}

// Process is a running locker or observer of a binary.
type Process struct {
	PID      int
	Observer bool
}

// Lockers returns the live (not zombie) `locker` processes of binary and of the locker build
// beside it, observers included.
func Lockers(binary string) []Process {
	light := filepath.Join(filepath.Dir(binary), LockerBinary) // what run starts this host's lockers from
	entries, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) < 2 || args[0] != binary && args[0] != light || args[1] != "locker" {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err != nil || zombie(string(stat)) {
			continue // gone, or a zombie, which holds nothing
		}
		out = append(out, Process{PID: pid, Observer: strings.Contains(string(cmdline), "\x00observer")})
	}
	return out
}

// zombie reads the state letter after the command name, which may itself hold ") ".
func zombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && strings.HasPrefix(stat[i:], ") Z")
}

// PIDs returns the pids of ps.
func PIDs(ps []Process) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.PID
	}
	return out
}

// Result is how one command ended.
type Result struct {
	Code           int // exit status
	Stdout, Stderr string
	Wall           time.Duration
}

// Run runs binary with args and a deadline. A command that cannot start, or that does not end
// within timeout (it is killed), is an error; an exit status other than 0 is not.
func Run(binary string, timeout time.Duration, args ...string) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), Wall: time.Since(t0)}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s %v did not end within %s", filepath.Base(binary), args, timeout)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		return res, fmt.Errorf("%s %v: %w", filepath.Base(binary), args, err)
	}
	return res, nil
}

// SameFile creates the file name through the first of mounts and returns its path through each:
// one file as several clients (nodes) of a file system see it.
func SameFile(mounts []string, name string) ([]string, error) {
	if len(mounts) == 0 {
		return nil, errors.New("lptest: no mounts")
	}
	if err := os.WriteFile(filepath.Join(mounts[0], name), nil, 0o644); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(mounts))
	for _, m := range mounts {
		out = append(out, filepath.Join(m, name))
	}
	return out, nil
}
