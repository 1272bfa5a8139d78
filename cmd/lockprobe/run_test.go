package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// TestContendGrantsEachOnce is the seed harness's experiment: ten lockers ask for a write lock
// at one instant; each must be granted exactly once, and no two write holds may overlap.
func TestContendGrantsEachOnce(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	res := lockprobe(t, 90*time.Second, "run", "-file", filepath.Join(dir, "lock-file"), "-procs", "10", "-timeout", "30s", "-out", out)
	if res.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	assertNoLockers(t)
	tr, err := tracefile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	attempts := byLocker(spansNamed(tr, semconv.SpanAcquire))
	if len(attempts) != 10 {
		t.Fatalf("attempts from %d lockers, want 10", len(attempts))
	}
	for id, as := range attempts {
		if len(as) != 1 || as[0].Attrs.Str(semconv.LockOutcome) != semconv.OutcomeGranted.String() {
			t.Errorf("locker %d: %d attempts, outcome %q; want one granted", id, len(as), as[0].Attrs.Str(semconv.LockOutcome))
		}
		if as[0].Attrs.IntOr(semconv.LockScheduled, 0) == 0 {
			t.Errorf("locker %d: attempt has no scheduled instant", id)
		}
	}
	holds := spansNamed(tr, semconv.SpanHold)
	if len(holds) != 10 {
		t.Fatalf("%d holds, want 10", len(holds))
	}
	assertNoOverlap(t, holds)
	for _, h := range holds {
		if h.Open() || h.Attrs.Str(semconv.LockHoldEnd) != semconv.HoldReleaseIf.String() {
			t.Errorf("hold of locker %d ended %q (open=%v), want releaseif", h.Attrs.IntOr(semconv.LockerID, -1), h.Attrs.Str(semconv.LockHoldEnd), h.Open())
		}
	}
	if !strings.Contains(res.stdout, "healthy") {
		t.Errorf("summary does not say healthy:\n%s", res.stdout)
	}
	sameStreamed(t, out)
}

// assertNoOverlap checks that write holds (all conflicting) never overlap in time.
func assertNoOverlap(t *testing.T, holds []*tracefile.Span) {
	t.Helper()
	assertNoOverlapWithin(t, holds, 0)
}

// assertNoOverlapWithin allows what clocks off by up to slack can make of disjoint holds: the
// clock uncertainty of lockers that measured their offset to the controller (remote ones) rather
// than sharing its clock. Shifted against each other by up to slack, two holds still overlap when
// each began more than slack before the other ended (the analyzer's exclusion rule, written out
// again here so that the test does not take the analyzer's word for it). Comparing a hold with the
// next one to start only is not enough: a remote locker's short hold stamped a few microseconds
// into a local one's may have been, in real time, wholly before it.
func assertNoOverlapWithin(t *testing.T, holds []*tracefile.Span, slack int64) {
	t.Helper()
	for i, a := range holds {
		for _, b := range holds[i+1:] {
			la, lb := a.Attrs.IntOr(semconv.LockerID, -1), b.Attrs.IntOr(semconv.LockerID, -1)
			if la == lb {
				continue
			}
			if a.End-b.Start > slack && b.End-a.Start > slack {
				t.Errorf("holds overlap by more than %d ns: locker %d [%d, %d] and locker %d [%d, %d]", slack, la, a.Start, a.End, lb, b.Start, b.End)
			}
		}
	}
}

func outcomes(spans []*tracefile.Span) map[string]int {
	m := map[string]int{}
	for _, s := range spans {
		m[s.Attrs.Str(semconv.LockOutcome)]++
	}
	return m
}

func TestTryStyleOneGrant(t *testing.T) {
	res := runScenario(t, `procs 5
all: file@{file}
0: write@+0s
0: sleep 2s
0: release
1-{last}: write@+1s style=try
all: stop
`)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	got := outcomes(spansNamed(res.trace, semconv.SpanAcquire))
	if got[semconv.OutcomeGranted.String()] != 1 || got[semconv.OutcomeWouldBlock.String()] != 4 || len(got) != 2 {
		t.Errorf("outcomes %v, want 1 granted and 4 would-block", got)
	}
	for _, a := range spansNamed(res.trace, semconv.SpanAcquire) {
		if a.Attrs.Str(semconv.LockOutcome) != semconv.OutcomeWouldBlock.String() {
			continue
		}
		if a.Attrs.Str(semconv.LockErrno) != "EAGAIN" && a.Attrs.Str(semconv.LockErrno) != "EACCES" {
			t.Errorf("would-block with errno %q", a.Attrs.Str(semconv.LockErrno))
		}
		if len(a.Events) == 0 || a.Events[0].Attrs.IntOr(semconv.LockOwnerLockerID, -1) != 0 {
			t.Errorf("failed try of locker %d does not name locker 0 as owner: %+v", a.Attrs.IntOr(semconv.LockerID, -1), a.Events)
		}
	}
}

func TestPollGivesUpAfterItsTries(t *testing.T) {
	res := runScenario(t, `procs 2
all: file@{file}
0: write@+0s
0: sleep 2s
0: release
1: write@+500ms style=poll tries=3 interval=100ms
all: stop
`)
	var poll *tracefile.Span
	for _, a := range spansNamed(res.trace, semconv.SpanAcquire) {
		if a.Attrs.IntOr(semconv.LockerID, -1) == 1 {
			poll = a
		}
	}
	if poll == nil {
		t.Fatal("no attempt of locker 1")
	}
	if o := poll.Attrs.Str(semconv.LockOutcome); o != semconv.OutcomeWouldBlock.String() {
		t.Errorf("outcome %q, want would-block", o)
	}
	if n := poll.Attrs.IntOr(semconv.LockTries, 0); n != 3 {
		t.Errorf("%d tries, want 3", n)
	}
	tries := 0
	for _, e := range poll.Events {
		if e.Name == semconv.EventTry {
			tries++
		}
	}
	if tries != 3 {
		t.Errorf("%d lock.try events, want 3", tries)
	}
	// Three tries with two pauses of 100 ms between them: the attempt cannot have been shorter.
	if d := time.Duration(poll.End - poll.Start); d < 200*time.Millisecond {
		t.Errorf("poll took %s, shorter than its 2 pauses of 100ms", d)
	}
}

// TestPosixCloseDropsLock shows the trap casacore works around: closing a second descriptor of
// the file drops the process's POSIX lock, and another locker gets it at once.
func TestPosixCloseDropsLock(t *testing.T) {
	res := runScenario(t, `procs 2
all: file@{file}
0: file@{file} fd=1
0: write@+0s
0: close@+1s fd=1
0: sleep 1s
0: releaseif
1: write@+500ms style=wait
1: releaseif
all: stop
`)
	var hold0, grant1 *tracefile.Span
	for _, h := range spansNamed(res.trace, semconv.SpanHold) {
		if h.Attrs.IntOr(semconv.LockerID, -1) == 0 {
			hold0 = h
		}
	}
	for _, a := range spansNamed(res.trace, semconv.SpanAcquire) {
		if a.Attrs.IntOr(semconv.LockerID, -1) == 1 {
			grant1 = a
		}
	}
	if hold0 == nil || grant1 == nil {
		t.Fatalf("missing hold of 0 (%v) or attempt of 1 (%v)", hold0, grant1)
	}
	if e := hold0.Attrs.Str(semconv.LockHoldEnd); e != semconv.HoldClose.String() {
		t.Errorf("locker 0's hold ended %q, want close", e)
	}
	if fd := hold0.Attrs.IntOr(semconv.LockClosedFD, -1); fd != 1 {
		t.Errorf("closed fd %d, want 1", fd)
	}
	if grant1.Attrs.Str(semconv.LockOutcome) != semconv.OutcomeGranted.String() {
		t.Fatalf("locker 1 outcome %q", grant1.Attrs.Str(semconv.LockOutcome))
	}
	if grant1.End < hold0.End {
		t.Errorf("locker 1 granted at %d before locker 0's hold ended at %d", grant1.End, hold0.End)
	}
	if wait := time.Duration(grant1.End - grant1.Start); wait < 300*time.Millisecond {
		t.Errorf("locker 1 waited only %s: it should have waited for the close", wait)
	}
	if !strings.Contains(res.stdout, "implicit-release") && !strings.Contains(res.stdout, "close") {
		t.Logf("summary does not mention the implicit release:\n%s", res.stdout)
	}
}

func TestScenarioErrorNamesFileAndLine(t *testing.T) {
	dir := t.TempDir()
	scen := filepath.Join(dir, "bad.lps")
	os.WriteFile(scen, []byte("all: file@{file}\n0: wirte@+1s\n"), 0o644)
	res := lockprobe(t, 30*time.Second, "run", "-file", filepath.Join(dir, "f"), "-scenario", scen, "-out", filepath.Join(dir, "out"))
	if res.code != 2 {
		t.Fatalf("exit %d, want 2", res.code)
	}
	if !strings.Contains(res.stderr, scen+":2:") {
		t.Errorf("stderr does not name %s line 2: %q", scen, res.stderr)
	}
	if n := strings.Count(strings.TrimSpace(res.stderr), "\n"); n != 0 {
		t.Errorf("error is %d lines, want one: %q", n+1, res.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("an output folder was created for a rejected run")
	}
	assertNoLockers(t)
}

func TestBadInputIsUsageError(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	unreadable := filepath.Join(dir, "ro")
	os.WriteFile(unreadable, nil, 0o000)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing dir", []string{"-file", filepath.Join(dir, "no", "such", "f")}, "does not exist"},
		{"directory", []string{"-file", dir}, "is a directory"},
		{"no file", []string{}, "-file is required"},
		{"procs not a number", []string{"-file", file, "-procs", "ten"}, "-procs"},
		{"procs zero", []string{"-file", file, "-procs", "0"}, "at least 1"},
		{"unknown scenario", []string{"-file", file, "-scenario", "nosuch"}, "nosuch"},
		{"unknown kind", []string{"-file", file, "-lock", "fcntl"}, "-lock"},
		{"unknown style", []string{"-file", file, "-style", "spin"}, "-style"},
		{"unknown flag", []string{"-file", file, "-frobnicate"}, "frobnicate"},
		{"timeout not a duration", []string{"-file", file, "-timeout", "soon"}, "-timeout"},
	}
	if os.Geteuid() != 0 {
		cases = append(cases, struct {
			name string
			args []string
			want string
		}{"unreadable file", []string{"-file", unreadable}, "cannot read"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := lockprobe(t, 20*time.Second, append([]string{"run", "-out", filepath.Join(dir, "out-"+c.name)}, c.args...)...)
			if res.code != 2 {
				t.Errorf("exit %d, want 2; stderr %q", res.code, res.stderr)
			}
			if !strings.Contains(res.stderr, c.want) || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
				t.Errorf("stderr %q: want one line mentioning %q", res.stderr, c.want)
			}
			assertNoLockers(t)
		})
	}
}

// TestKilledLockerIsReported kills a locker while it holds the lock: the run must still end,
// the kill must be in the trace, and the waiter must then be granted.
func TestKilledLockerIsReported(t *testing.T) {
	dir := t.TempDir()
	scen := filepath.Join(dir, "s.lps")
	os.WriteFile(scen, []byte(`procs 2
all: file@{file}
0: write@+0s
0: sleep 1h
1: write@+500ms style=wait
1: releaseif
all: stop
`), 0o644)
	out := filepath.Join(dir, "out")
	done := make(chan runResult, 1)
	go func() {
		done <- lockprobe(t, 60*time.Second, "run", "-file", filepath.Join(dir, "f"), "-scenario", scen, "-out", out, "-timeout", "20s")
	}()
	victim := waitForHolder(t, filepath.Join(out, tracefile.FileName), 0)
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res := <-done
	assertNoLockers(t)
	sameStreamed(t, out) // the controller ended the killed locker's spans
	tr, err := tracefile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	var hold0, attempt1 *tracefile.Span
	killed := false
	for _, s := range tr.Spans {
		switch {
		case s.Name == semconv.SpanHold && s.Attrs.IntOr(semconv.LockerID, -1) == 0:
			hold0 = s
		case s.Name == semconv.SpanAcquire && s.Attrs.IntOr(semconv.LockerID, -1) == 1:
			attempt1 = s
		case s.Name == semconv.SpanLocker:
			for _, e := range s.Events {
				if e.Name == semconv.EventExit && e.Attrs.Str(semconv.ExitSignal) == "killed" {
					killed = true
				}
			}
		}
	}
	if !killed {
		t.Error("no locker.exit event with signal killed")
	}
	if hold0 == nil || hold0.Attrs.Str(semconv.LockHoldEnd) != semconv.HoldExit.String() {
		t.Errorf("locker 0's hold: %+v, want ended by exit", hold0)
	}
	if attempt1 == nil || attempt1.Attrs.Str(semconv.LockOutcome) != semconv.OutcomeGranted.String() {
		t.Errorf("locker 1's attempt: %+v, want granted after the kill", attempt1)
	}
	if res.code == 1 || res.code == 2 {
		t.Errorf("exit %d: %s", res.code, res.stderr)
	}
}

// waitForHolder waits until the trace shows a hold of locker id and returns its pid.
func waitForHolder(t *testing.T, trace string, id int64) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if f, err := os.Open(trace); err == nil {
			tr, err := tracefile.Read(f)
			f.Close()
			if err == nil {
				for _, s := range tr.Spans {
					if s.Name == semconv.SpanHold && s.Attrs.IntOr(semconv.LockerID, -1) == id {
						return int(s.Resource.IntOr(semconv.ProcessPID, 0))
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no hold of locker %d in %s", id, trace)
	return 0
}

// TestInterruptLeavesNothingBehind sends SIGINT to a run with a blocked waiter: the run ends at
// once with its trace written, the waiter's attempt recorded as blocked, and no process left.
func TestInterruptLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cmdDone := make(chan runResult, 1)
	cmd := startLockprobe(t, "run", "-file", filepath.Join(dir, "f"), "-scenario", "hold", "-procs", "3", "-out", out, "-timeout", "60s")
	go func() { cmdDone <- waitLockprobe(t, cmd) }()
	waitForHolder(t, filepath.Join(out, tracefile.FileName), 0)
	time.Sleep(1500 * time.Millisecond) // let the others start waiting
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cmdDone:
	case <-time.After(20 * time.Second):
		t.Fatal("run did not end within 20s of SIGINT")
	}
	assertNoLockers(t)
	tr, err := tracefile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	got := outcomes(spansNamed(tr, semconv.SpanAcquire))
	if got[semconv.OutcomeBlocked.String()] != 2 || got[semconv.OutcomeGranted.String()] != 1 {
		t.Errorf("outcomes %v, want 1 granted and 2 blocked", got)
	}
	for _, s := range tr.Spans {
		if s.Open() {
			t.Errorf("span %s %s left open", s.Name, s.SpanID)
		}
		if s.Name == semconv.SpanRun && s.Attrs.Str(semconv.RunEndReason) != "interrupted" {
			t.Errorf("end reason %q, want interrupted", s.Attrs.Str(semconv.RunEndReason))
		}
	}
}

// TestLockersOutliveNoController: a locker whose controller is gone releases and exits. A
// controller killed outright takes its lockers with it (the kernel's parent-death signal); a
// controller that stops answering (SIGSTOP here: a remote locker would see the same silence) is
// given up on by its heartbeat watch.
func TestLockersOutliveNoController(t *testing.T) {
	for _, how := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		t.Run(how.String(), func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			cmd := startLockprobe(t, "run", "-file", filepath.Join(dir, "f"), "-scenario", "hold", "-procs", "3", "-out", out, "-timeout", "60s")
			waitForHolder(t, filepath.Join(out, tracefile.FileName), 0)
			if err := cmd.Process.Signal(how); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(lockerProcesses()) > 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			left := lockerProcesses()
			_ = cmd.Process.Kill()
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_, _ = cmd.Process.Wait()
			if len(left) > 0 {
				t.Fatalf("lockers still alive 10 s after the controller got %s: %v", how, left)
			}
		})
	}
}

// TestRemoteLocker: the last locker is not started by the controller but comes from "another
// node" (started here by hand, as a job script would on a cluster node) with the run's token;
// one with a wrong token is refused.
func TestRemoteLocker(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lock-file")
	out := filepath.Join(dir, "out")
	port := freePort(t)
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	cmd := startLockprobe(t, "run", "-file", file, "-procs", "3", "-remote", "1", "-listen", endpoint, "-token", "s3cret", "-out", out, "-timeout", "30s")
	runDone := make(chan runResult, 1)
	go func() { runDone <- waitLockprobe(t, cmd) }()

	remote := func(token string) runResult {
		c := exec.Command(binary, "locker", "-connect", endpoint, "-id", "2", "-allow", file, "-node", "far-node")
		c.Env = append(os.Environ(), "LOCKPROBE_TOKEN="+token)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		err := c.Run()
		res := runResult{stderr: stderr.String()}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			res.code = ee.ExitCode()
		}
		return res
	}
	// The controller may not listen yet: the locker's own start-up timeout covers that.
	if bad := remote("wrong"); bad.code == 0 || !strings.Contains(bad.stderr, "bad token") {
		t.Errorf("a locker with a wrong token: exit %d, stderr %q; want refused", bad.code, bad.stderr)
	}
	if good := remote("s3cret"); good.code != 0 {
		t.Fatalf("remote locker: exit %d: %s", good.code, good.stderr)
	}
	var res runResult
	select {
	case res = <-runDone:
	case <-time.After(60 * time.Second):
		t.Fatal("run did not end")
	}
	if res.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	assertNoLockers(t)
	tr, err := tracefile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	granted := map[int64]string{}
	for _, a := range spansNamed(tr, semconv.SpanAcquire) {
		if a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted.String() {
			granted[a.Attrs.IntOr(semconv.LockerID, -1)] = a.Resource.Str(semconv.Node)
		}
	}
	if len(granted) != 3 || granted[2] != "far-node" {
		t.Errorf("granted lockers and their nodes: %v; want 0, 1 and 2 on far-node", granted)
	}
	// This host's lockers started from the locker build beside lockprobe; the remote one, started
	// by hand, from the full binary, which has the locker command too.
	light := filepath.Join(filepath.Dir(binary), lptest.LockerBinary)
	for _, l := range spansNamed(tr, semconv.SpanLocker) {
		want := light
		if l.Attrs.IntOr(semconv.LockerID, -1) == 2 {
			want = binary
		}
		if got := l.Resource.Str(semconv.ProcessExec); got != want {
			t.Errorf("locker %d ran %q, want %q", l.Attrs.IntOr(semconv.LockerID, -1), got, want)
		}
	}
	// The remote locker measured its offset: overlaps within its uncertainty prove nothing.
	var slack int64
	for _, l := range spansNamed(tr, semconv.SpanLocker) {
		slack += l.Attrs.IntOr(semconv.ClockUncertainty, 0)
	}
	assertNoOverlapWithin(t, spansNamed(tr, semconv.SpanHold), slack)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestKeepPriority: by default a locker's lock thread asks for nice -10 (granted as root) and its
// locker span says what it ran with; with -keep-priority it keeps the process's priority.
func TestKeepPriority(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root may raise a thread's priority: both runs would keep it")
	}
	p, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	own := int64(20 - p) // the lockers start with this process's nice value (the system call says 20 - nice)
	const text = "procs 2\nall: file@{file}\nall: write@+0s\nall: releaseif\nall: stop\n"
	for _, tt := range []struct {
		args []string
		want int64
	}{{nil, -10}, {[]string{"-keep-priority"}, own}} {
		res := runScenario(t, text, tt.args...)
		if res.code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", tt.args, res.code, res.stdout, res.stderr)
		}
		lockers := spansNamed(res.trace, semconv.SpanLocker)
		if len(lockers) != 2 {
			t.Fatalf("%v: %d locker spans, want 2", tt.args, len(lockers))
		}
		for _, l := range lockers {
			if got, ok := l.Attrs.Int(semconv.LockThreadNice); !ok || got != tt.want {
				t.Errorf("%v: locker %d's lock thread ran at nice %d (recorded: %v), want %d", tt.args, l.Attrs.IntOr(semconv.LockerID, -1), got, ok, tt.want)
			}
		}
	}
}
