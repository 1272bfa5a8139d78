package gluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/reports"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
	"golang.org/x/sys/unix"
)

// lostGrant: locker 0 (client A) holds the write lock from the start until
// +4s; locker 1 (client B) asks for it at +1s and waits. The test stops B's
// client between the two, so the brick's grant cannot be delivered.
const lostGrant = `# description: locker 1 on client B waits for locker 0 on client A, who releases at +4s
procs 2
all: file@{file}
0: write@+0s
0: release@+4s
1: write@+1s style=wait
1: release
all: stop
`

// holderDies: locker 0 (client A) holds the write lock for the whole run,
// locker 1 (client B) waits for it from +1s.
const holderDies = `# description: locker 0 on client A holds for the whole run; locker 1 on client B waits
procs 2
all: file@{file}
0: write@+0s
0: sleep 1h
1: write@+1s style=wait
1: sleep 500ms
1: release
all: stop
`

// waiting tells whether locker id's first attempt has started and has no
// outcome yet (its partial record is in the trace).
func waiting(id int64) func(*tracefile.Trace) bool {
	return func(tr *tracefile.Trace) bool {
		a := attempt(tr, id)
		return a != nil && a.Open() && a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeWaiting.String()
	}
}

// lockerPID returns the pid of locker id (from its lockprobe.locker span).
func lockerPID(t *testing.T, tr *tracefile.Trace, id int64) int64 {
	t.Helper()
	for _, s := range spans(tr, semconv.SpanLocker) {
		if lockerID(s) == id {
			return pidOf(s)
		}
	}
	t.Fatalf("no lockprobe.locker span of locker %d", id)
	return 0
}

// lockerTIDs returns every thread id the trace gives for locker id's
// process (the brick records the calling thread's id, not the pid).
func lockerTIDs(tr *tracefile.Trace, id, pid int64) map[int64]bool {
	ids := map[int64]bool{pid: true}
	for _, s := range tr.Spans {
		if lockerID(s) != id {
			continue
		}
		if v, ok := s.Attrs.Int(semconv.ProcTID); ok {
			ids[v] = true
		}
		if v, ok := s.Resource.Int(semconv.ProcTID); ok {
			ids[v] = true
		}
	}
	for _, e := range events(tr, semconv.SpanSnapshot, semconv.EventState) {
		if e.Attrs.IntOr(semconv.LockerID, -100) == id {
			if v, ok := e.Attrs.Int(semconv.ProcTID); ok && v > 0 {
				ids[v] = true
			}
		}
	}
	return ids
}

// logFindings logs the verdict's findings and their evidence as the
// analysis of the trace gives them, in the reports' words.
func logFindings(t *testing.T, r *lpRun, opts analysis.Options) *reports.View {
	t.Helper()
	v := reports.NewView(analysis.Analyze(r.trace, opts), reports.Options{})
	for _, f := range v.Findings {
		t.Logf("finding %s (exit %d, lockers %v, resolved %v): %s", f.Class, f.Exit, f.Lockers, f.Resolved, f.Summary)
		for _, e := range f.Evidence {
			t.Logf("  evidence [%s by %s @%d]: %s", e.Source, e.By, e.AtNS, e.Text)
		}
	}
	if v.Verdict.Class != r.class {
		t.Errorf("analysis of the saved trace says %s, the run said %s", v.Verdict.Class, r.class)
	}
	return v
}

// logSnapshot logs the snapshot's process states and the brick's locks.
func logSnapshot(t *testing.T, tr *tracefile.Trace) {
	t.Helper()
	for _, s := range spans(tr, semconv.SpanSnapshot) {
		t.Logf("snapshot: end reason %s", s.Attrs.Str(semconv.RunEndReason))
		for _, e := range s.Events {
			if e.Name == semconv.EventState || e.Name == "gluster.lock" {
				t.Logf("  %s", describeEvent(e))
			}
		}
	}
}

// TestLockprobeLostGrant stops client B while its locker waits behind a
// holder on client A; A releases; the brick grants B's locker, but the grant
// cannot reach it. The observer on A sees the waiter as holder.
func TestLockprobeLostGrant(t *testing.T) {
	ctx := lpContext(t)
	c := newLPCluster(ctx, t)
	b := c.ClientPID(1)
	t.Cleanup(func() { _ = unix.Kill(b, unix.SIGCONT) })
	r := c.start(t, "lostgrant", "lost.lock", lostGrant, "-timeout", "8s", "-stuck-after", "2s")

	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := watch(wctx, r.out, waiting(1)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(b, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	t.Logf("client B (glusterfs %d) stopped %s after the run started", b, stopped.Sub(r.started).Round(time.Millisecond))
	// A controller that is itself stuck in a call through B's mount never
	// ends: note where its threads wait, and resume B so that the run ends
	// and the rest of its evidence can still be checked.
	rescued := rescueAfter(r, 8*time.Second+15*time.Second, b)
	// Locker 1's F_SETLKW (and its watcher's F_GETLK), once read by client B, wait in the
	// kernel uninterruptibly (request_wait_answer) until B answers: SIGKILL cannot end them
	// before B resumes. So the leftover check comes after the resume.
	r.wait(t, nil)
	if err := unix.Kill(b, unix.SIGCONT); err != nil {
		t.Error(err)
	}
	c.assertNoLockers(t)
	stuck, wasRescued := rescued()
	if wasRescued {
		t.Errorf("the controller was still running 15s after its -timeout, stuck in calls through the stopped client's mount; "+
			"client B was resumed to end the run. Controller threads in FUSE:\n%s", stuck)
	}
	logSnapshot(t, r.trace)
	res := logFindings(t, r, analysis.Options{StuckAfter: 2 * time.Second})
	r.expect(t, "lost-callback", 4)
	checkOwnersMapped(t, r.trace)
	// Locker 1's own F_GETLK goes through the stopped client and never
	// returns: its last answer predates the release, so it is no evidence
	// that the file system "still reports the released lock".
	for _, f := range res.Findings {
		if f.Class == analysis.ClassStaleHolder {
			t.Errorf("stale-holder finding resting on a F_GETLK answer from before the release (the waiter's watcher is stuck in the stopped client): %s\n%s", f.Summary, evidenceText(f))
		}
	}

	// The release happened while B was stopped (else the test proves nothing).
	var release int64
	for _, h := range spans(r.trace, semconv.SpanHold) {
		if lockerID(h) == 0 {
			release = h.End
			t.Logf("locker 0's hold: %s", describe(h))
		}
	}
	if release == 0 || release < stopped.UnixNano() {
		t.Fatalf("locker 0's hold ended at %d, before B was stopped at %d", release, stopped.UnixNano())
	}
	waiter := attempt(r.trace, 1)
	t.Logf("locker 1's attempt: %s", describe(waiter))
	if o := waiter.Attrs.Str(semconv.LockOutcome); o != semconv.OutcomeBlocked.String() {
		t.Errorf("locker 1's attempt ended %q, want %q (still in F_SETLKW at the end)", o, semconv.OutcomeBlocked.String())
	}

	// The observer on A sees locker 1's pid as holder after the release.
	pid1 := lockerPID(t, r.trace, 1)
	var seen bool
	for _, o := range spans(r.trace, semconv.SpanObserver) {
		for _, e := range o.Events {
			if e.Name != semconv.EventObserved {
				continue
			}
			t.Logf("observer %d on %s: %s", lockerID(o), node(o), describeEvent(e))
			if strings.HasSuffix(node(o), "client0") && e.Time >= release && e.Attrs.IntOr(semconv.LockOwnerPID, 0) == pid1 {
				seen = true
			}
		}
	}
	if !seen {
		t.Errorf("the observer on client0 never saw locker 1 (pid %d) as holder after locker 0 released", pid1)
	}

	if dumps, _ := filepath.Glob(filepath.Join(r.out, "gluster-statedump-*.txt")); len(dumps) != 1 {
		t.Errorf("statedump copies in the output: %v, want one", dumps)
	}
	if wasRescued {
		// The snapshot (statedump, process states) was taken after B
		// resumed and delivered the grant: it cannot show the lost one.
		t.Logf("brick and unresponsive-member checks skipped: client B was resumed before the snapshot")
		return
	}
	// The brick: locker 1's lock ACTIVE, queued and then granted.
	tids := lockerTIDs(r.trace, 1, pid1)
	var active bool
	for _, e := range events(r.trace, semconv.SpanSnapshot, "gluster.lock") {
		_, granted := e.Attrs.Int("gluster.lock.granted_at")
		_, blocked := e.Attrs.Int("gluster.lock.blocked_at")
		if tids[e.Attrs.IntOr(semconv.ProcLockPI, 0)] && e.Attrs.Str("gluster.lock.state") == "ACTIVE" && granted && blocked &&
			c.MountOf(int(e.Attrs.IntOr("gluster.lock.client_pid", 0))) == 1 {
			active = true
		}
	}
	if !active {
		t.Errorf("no ACTIVE brick lock of locker 1 (pid/tids %v) through client B with both blocked and granted times", tids)
	}

	// The run ended at its timeout although B's locker and observer were
	// stuck in FUSE calls to a stopped client.
	for _, s := range spans(r.trace, semconv.SpanSnapshot) {
		if why := s.Attrs.Str(semconv.RunEndReason); why != "timeout" {
			t.Errorf("run ended by %q, want timeout", why)
		}
	}
	t.Logf("run wall time %s for -timeout 8s", r.wall.Round(time.Millisecond))
	if r.verdict != nil {
		t.Logf("verdict.json: unresponsive %q, killed %q", r.verdict.Run.Unresponsive, r.verdict.Run.Killed)
	}
	all := r.stdout.String() + r.stderr.String()
	if !strings.Contains(all, "unresponsive") && !strings.Contains(all, "killed") {
		t.Errorf("neither the summary nor stderr names the members stuck in FUSE (unresponsive or killed):\nstdout: %s\nstderr tail: %s", r.stdout.String(), tail(r.stderr.String(), 3000))
	}
}

// TestLockprobeHolderClientDies kills client A's glusterfs while its locker
// holds the write lock and a locker on B waits: the brick drops A's locks
// with the connection and grants B's locker, while A's locker still
// believes it holds.
func TestLockprobeHolderClientDies(t *testing.T) {
	ctx := lpContext(t)
	c := newLPCluster(ctx, t)
	r := c.start(t, "holderdies", "dies.lock", holderDies, "-timeout", "6s", "-stuck-after", "2s")
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := watch(wctx, r.out, waiting(1)); err != nil {
		t.Fatal(err)
	}
	a := c.ClientPID(0)
	if err := unix.Kill(a, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now().UnixNano()
	t.Logf("client A (glusterfs %d) killed %s after the run started", a, time.Since(r.started).Round(time.Millisecond))
	r.wait(t, c)
	logSnapshot(t, r.trace)
	res := logFindings(t, r, analysis.Options{StuckAfter: 2 * time.Second})
	for _, s := range spans(r.trace, semconv.SpanHold) {
		t.Logf("hold: %s", describe(s))
	}
	for _, s := range spans(r.trace, semconv.SpanAcquire) {
		t.Logf("attempt: %s", describe(s))
	}
	for _, s := range spans(r.trace, semconv.SpanObserver) {
		for _, e := range s.Events {
			t.Logf("observer %d on %s: %s", lockerID(s), node(s), describeEvent(e))
		}
	}
	r.expect(t, "exclusion-violated", 5)
	checkOwnersMapped(t, r.trace)

	// The trace shows that client A lost its connection: the observer on
	// A gets ENOTCONN from F_GETLK.
	var enotconn bool
	for _, o := range spans(r.trace, semconv.SpanObserver) {
		for _, e := range o.Events {
			if strings.HasSuffix(node(o), "client0") && strings.Contains(e.Attrs.Str(semconv.LockOwnerSource), "ENOTCONN") {
				enotconn = true
			}
		}
	}
	if !enotconn {
		t.Errorf("no ENOTCONN from the observer on client A in the trace")
	}

	// B's locker was granted after the kill while A's locker's hold lasted
	// to the run's end.
	var granted bool
	for _, s := range spans(r.trace, semconv.SpanAcquire) {
		if lockerID(s) == 1 && s.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted.String() && s.End >= killed {
			granted = true
		}
	}
	if !granted {
		t.Errorf("locker 1 on client B was not granted after client A was killed")
	}
	// The dead client answers ECONNABORTED to the first call after its death and ENOTCONN to
	// those after: which one the finding quotes depends on which call came first.
	for _, f := range res.Findings {
		text := strings.ToLower(f.Summary + evidenceText(f))
		if f.Class == analysis.ClassExclusionViolated && !strings.Contains(text, "enotconn") && !strings.Contains(text, "econnaborted") {
			t.Errorf("the exclusion finding does not show that client A lost its connection (ENOTCONN or ECONNABORTED): %s", f.Summary)
		}
	}

	if err := c.Remount(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Mounts[0], "after"), []byte("x"), 0o644); err != nil {
		t.Errorf("mount A after Remount: %v", err)
	}
}

func evidenceText(f reports.FindingView) string {
	var b strings.Builder
	for _, e := range f.Evidence {
		b.WriteString(e.Text)
		b.WriteString("\n")
	}
	return b.String()
}

// rescueAfter waits in the background until the run ends or after has
// passed since it started; in the second case it records the run's threads
// that wait in the kernel for FUSE and SIGCONTs client. The returned
// function, called once the run has ended, says whether that happened.
func rescueAfter(r *lpRun, after time.Duration, client int) func() (string, bool) {
	done := make(chan struct{})
	var stuck string
	var fired bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-done:
		case <-time.After(time.Until(r.started.Add(after))):
			fired = true
			stuck = fuseThreads(r.cmd.Process.Pid)
			_ = unix.Kill(client, unix.SIGCONT)
		}
	}()
	return func() (string, bool) {
		close(done)
		<-finished
		return stuck, fired
	}
}

// fuseThreads describes the threads of pid blocked in a FUSE request:
// thread id, wchan and /proc/PID/task/TID/syscall (number and arguments).
func fuseThreads(pid int) string {
	tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*"))
	var out []string
	for _, task := range tasks {
		wchan, _ := os.ReadFile(filepath.Join(task, "wchan"))
		if !strings.Contains(string(wchan), "fuse") && !strings.Contains(string(wchan), "request_wait_answer") {
			continue
		}
		sc, _ := os.ReadFile(filepath.Join(task, "syscall"))
		stack, _ := os.ReadFile(filepath.Join(task, "stack"))
		out = append(out, fmt.Sprintf("tid %s wchan %s syscall %s\n%s", filepath.Base(task), wchan, strings.TrimSpace(string(sc)), stack))
	}
	if len(out) == 0 {
		return "(no thread in a FUSE wait)"
	}
	return strings.Join(out, "\n")
}

// checkOwnersMapped fails the test when a conflict owner or an observed
// holder was classed foreign although its l_pid is a thread id of one of
// the run's lockers (GlusterFS records the calling thread; see FINDINGS.md).
func checkOwnersMapped(t *testing.T, tr *tracefile.Trace) {
	t.Helper()
	tids := map[int64]int64{}
	for _, e := range events(tr, semconv.SpanSnapshot, semconv.EventState) {
		if tid, ok := e.Attrs.Int(semconv.ProcTID); ok && tid > 0 {
			tids[tid] = e.Attrs.IntOr(semconv.LockerID, -100)
		}
	}
	for _, s := range tr.Spans {
		for _, e := range s.Events {
			if e.Name != semconv.EventConflict && e.Name != semconv.EventObserved {
				continue
			}
			pid := e.Attrs.IntOr(semconv.LockOwnerPID, 0)
			if id, ok := tids[pid]; ok && e.Attrs.Str(semconv.LockOwnerClass) == "foreign" {
				t.Errorf("%s of locker %d at %d: owner pid %d is locker %d's lock thread, yet classed foreign (span ended at %d)",
					e.Name, lockerID(s), e.Time, pid, id, s.End)
			}
		}
	}
}
