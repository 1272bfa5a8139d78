package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// binary is the lockprobe executable built once for the end-to-end tests: lockers must be real
// processes, started the way users start them.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lockprobe-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = lptest.BuildLockprobe(dir, ".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type runResult struct {
	code           int
	stdout, stderr string
	out            string // output folder
	trace          *tracefile.Trace
}

// lockprobe runs the binary with args and a deadline; out is passed as -out for run.
func lockprobe(t *testing.T, timeout time.Duration, args ...string) runResult {
	t.Helper()
	r, err := lptest.Run(binary, timeout, args...)
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, r.Stderr)
	}
	return runResult{code: r.Code, stdout: r.Stdout, stderr: r.Stderr}
}

// scenarioRun writes a scenario text beside a fresh lock file and returns the `lockprobe run`
// arguments for it (args after them) and the output folder.
func scenarioRun(t *testing.T, text string, args ...string) ([]string, string) {
	t.Helper()
	dir := t.TempDir()
	scen := filepath.Join(dir, "scenario.lps")
	if err := os.WriteFile(scen, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	return append([]string{"run", "-file", filepath.Join(dir, "lock-file"), "-scenario", scen, "-out", out}, args...), out
}

// runScenario runs `lockprobe run` with a scenario text on a fresh file and reads the trace.
func runScenario(t *testing.T, text string, args ...string) runResult {
	t.Helper()
	all, out := scenarioRun(t, text, args...)
	res := lockprobe(t, 90*time.Second, all...)
	res.out = out
	tr, err := tracefile.Open(out)
	if err != nil {
		t.Fatalf("read trace: %v\nstdout: %s\nstderr: %s", err, res.stdout, res.stderr)
	}
	res.trace = tr
	assertNoLockers(t)
	return res
}

// spansNamed returns the spans of one name, by locker id then start.
func spansNamed(tr *tracefile.Trace, name string) []*tracefile.Span {
	var out []*tracefile.Span
	for _, s := range tr.Spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		li, lj := out[i].Attrs.IntOr(semconv.LockerID, -1), out[j].Attrs.IntOr(semconv.LockerID, -1)
		if li != lj {
			return li < lj
		}
		return out[i].Start < out[j].Start
	})
	return out
}

func byLocker(spans []*tracefile.Span) map[int64][]*tracefile.Span {
	m := map[int64][]*tracefile.Span{}
	for _, s := range spans {
		id := s.Attrs.IntOr(semconv.LockerID, -1)
		m[id] = append(m[id], s)
	}
	return m
}

// assertNoLockers fails when a process of the test binary's lockers is still alive.
func assertNoLockers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := lockerProcesses()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("locker processes left behind: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lockerProcesses() []int { return lptest.PIDs(lptest.Lockers(binary)) }

func startLockprobe(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = new(bytes.Buffer), new(bytes.Buffer)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd
}

func waitLockprobe(t *testing.T, cmd *exec.Cmd) runResult {
	err := cmd.Wait()
	res := runResult{stdout: cmd.Stdout.(*bytes.Buffer).String(), stderr: cmd.Stderr.(*bytes.Buffer).String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.code = ee.ExitCode()
	}
	return res
}
