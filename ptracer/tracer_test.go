package ptracer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/lockcall"
	"github.com/lockprobe/lockprobe/semconv"
)

// The test binary is its own helper: with this variable set it installs the filter and execs.
const helperEnv = "LOCKPROBE_PTRACER_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		// argv: test-binary PATH ARGV0 ARGS...
		if err := InstallAndExec(os.Args[1], os.Args[2:], os.Environ()); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(127)
		}
	}
	os.Exit(m.Run())
}

func python(t *testing.T) string {
	p, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	return p
}

type recorder struct{ Log }

func (r *recorder) add(e Event) { r.Add(e) }

func (r *recorder) calls(kind Kind) []Event { return r.Of(kind) }

func start(t *testing.T, ctx context.Context, prog string, copies int, args ...string) (*Tracer, *recorder) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	tr, err := Start(ctx, Options{Program: prog, Args: args, Copies: copies, Helper: []string{self},
		Env: append(os.Environ(), helperEnv+"=1")}, r.add)
	if err != nil {
		t.Fatal(err)
	}
	// One tracer at a time in a process: each reaps every child (wait4(-1)).
	t.Cleanup(func() {
		tr.Kill()
		<-tr.Done()
	})
	return tr, r
}

// lockCalls returns the events of kind about lock calls (not close and dup).
func (r *recorder) lockCalls(kind Kind) []Event {
	var out []Event
	for _, e := range r.calls(kind) {
		if e.Call.Op == lockcall.OpLock || e.Call.Op == lockcall.OpUnlock || e.Call.Op == lockcall.OpGetlk {
			out = append(out, e)
		}
	}
	return out
}

// A program that takes every kind of lock, forks, and closes a descriptor: every call is seen
// at entry and at return, with its decoded request.
func TestTraceLockCalls(t *testing.T) {
	py := python(t)
	f := filepath.Join(t.TempDir(), "f")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, r := start(t, ctx, py, 1, "-c", lptest.EveryLockCall, f)
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	enters := r.calls(CallEnter)
	returns := r.calls(CallReturn)
	var texts []string
	for _, e := range enters {
		texts = append(texts, e.Call.Text())
	}
	joined := strings.Join(texts, "\n")
	for _, want := range []string{
		"F_SETLKW, {F_WRLCK, start=0, len=1}", "F_SETLKW, {F_UNLCK, start=0, len=1}",
		"LOCK_SH|LOCK_NB)", "F_OFD_SETLK, {F_RDLCK, start=4, len=2}", "close(",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no call %q among\n%s", want, joined)
		}
	}
	// Only lock requests and F_GETLK stop again at their return; unlocks and closes do not.
	need := 0
	for _, e := range enters {
		if NeedsReturn(e.Call) {
			need++
		}
	}
	if len(returns) != need || need == 0 {
		t.Errorf("%d returns for %d entries needing one", len(returns), need)
	}
	for _, e := range returns {
		if !NeedsReturn(e.Call) {
			t.Errorf("a return of %s, which needs none", e.Call.Text())
		}
	}
	starts := r.calls(ProcStart)
	exits := r.calls(ProcExit)
	if len(starts) != 2 || len(exits) != 2 {
		t.Fatalf("starts %d exits %d, want 2 and 2", len(starts), len(exits))
	}
	if starts[1].PPID != starts[0].PID {
		t.Errorf("fork's parent %d, want %d", starts[1].PPID, starts[0].PID)
	}
	var ofd *Event
	for i := range enters {
		if enters[i].Call.Kind == semconv.KindOFD {
			ofd = &enters[i]
		}
	}
	if ofd == nil || ofd.PID != starts[1].PID {
		t.Errorf("OFD lock not made by the child: %+v", ofd)
	}
	for _, e := range exits {
		want := "exit status 0"
		if e.PID == starts[1].PID {
			want = "exit status 3"
		}
		if e.Status != want {
			t.Errorf("pid %d: %q, want %q", e.PID, e.Status, want)
		}
	}
	// Only filtered calls stop: python makes hundreds of other calls.
	for _, e := range enters {
		if e.Call.Op == lockcall.OpNone {
			t.Errorf("unfiltered call reported: %+v", e)
		}
	}
}

// A blocked F_SETLKW is seen at entry and returns only once the holder lets go.
func TestBlockedCall(t *testing.T) {
	py := python(t)
	f := filepath.Join(t.TempDir(), "f")
	fh, err := os.OpenFile(f, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(fh.Fd(), unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, r := start(t, ctx, py, 1, "-c", lptest.WaitForLock, f)
	deadline := time.Now().Add(10 * time.Second)
	for len(r.lockCalls(CallEnter)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(r.lockCalls(CallReturn)); n != 0 {
		t.Fatalf("%d returns while the lock is held", n)
	}
	lk.Type = unix.F_UNLCK
	if err := unix.FcntlFlock(fh.Fd(), unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	rets := r.lockCalls(CallReturn)
	if len(rets) == 0 || rets[0].Errno != 0 || !rets[0].Call.Wait {
		t.Fatalf("returns %+v", rets)
	}
	if d := rets[0].At.Sub(r.lockCalls(CallEnter)[0].At); d < 200*time.Millisecond {
		t.Errorf("returned %v after entry, before the holder let go", d)
	}
}

func TestCopiesAndKill(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tr, r := start(t, ctx, "/bin/sleep", 3, "60")
	roots := tr.Roots()
	if len(roots) != 3 {
		t.Fatalf("roots %v", roots)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-tr.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("tracees not killed")
	}
	exits := r.calls(ProcExit)
	if len(exits) != 3 {
		t.Fatalf("exits %+v", exits)
	}
	copies := map[int]bool{}
	for _, e := range exits {
		copies[e.Copy] = true
		if e.Signal != "SIGKILL" {
			t.Errorf("pid %d ended %q", e.PID, e.Status)
		}
	}
	if len(copies) != 3 {
		t.Errorf("copies %v", copies)
	}
}

// A program the helper cannot exec: the copy ends (127) without ever starting.
func TestStartMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, r := start(t, ctx, "/nonexistent/prog", 1)
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := len(r.calls(ProcStart)); n != 0 {
		t.Errorf("%d starts", n)
	}
	exits := r.calls(ProcExit)
	if len(exits) != 1 || exits[0].Status != "exit status 127" {
		t.Errorf("exits %+v", exits)
	}
}

// A traced program stopped by job control (SIGSTOP, ^Z's SIGTSTP) stays stopped, as it would
// untraced, until SIGCONT: the tracer leaves it in the stop (PTRACE_LISTEN) instead of
// resuming it.
func TestJobControlStopKept(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "after")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, r := start(t, ctx, py, 1, "-c", `import os, signal, sys
os.kill(os.getpid(), signal.SIGTSTP)
open(sys.argv[1], "w").close()`, marker)
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s := r.calls(ProcStart); len(s) > 0 {
			pid = s[0].PID
			if ps, err := host.ReadProcess(pid, 0); err == nil && (ps.State == "T" || ps.State == "t") {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatal("program never started")
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the program went on after its job-control stop")
	}
	ps, err := host.ReadProcess(pid, 0)
	if err != nil || (ps.State != "T" && ps.State != "t") {
		t.Fatalf("state %+v (%v), want stopped", ps, err)
	}
	if err := unix.Kill(pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the program did not go on after SIGCONT: %v", err)
	}
	if ex := r.calls(ProcExit); len(ex) != 1 || ex[0].Status != "exit status 0" {
		t.Errorf("exits %+v", ex)
	}
}
