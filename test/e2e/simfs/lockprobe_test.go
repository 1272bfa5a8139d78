package simfs

import (
	"html"
	"strings"
	"testing"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/simfs/locktable"
)

// TestContendThreeNodes: the default scenario over three nodes in flock mode: the lock server
// hands the write lock from node to node, every locker gets it once: healthy.
func TestContendThreeNodes(t *testing.T) {
	s := startSimfs(t, 3)
	r := startRun(t, s.files(t, "contend"), "contend", "-procs", "6", "-timeout", "20s")
	r.wait(t)
	r.expect(t, "healthy", 0)
	grants := map[int64]int{}
	nodes := map[string]bool{}
	for _, a := range spans(r.trace, semconv.SpanAcquire) {
		if a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted.String() {
			grants[lockerOf(a)]++
			nodes[a.Resource.Str(semconv.FSMountPoint)] = true
		}
	}
	for id := int64(0); id < 6; id++ {
		if grants[id] != 1 {
			t.Errorf("locker %d granted %d times, want once", id, grants[id])
		}
	}
	if len(nodes) != 3 {
		t.Errorf("grants through mounts %v, want three", nodes)
	}
	report := html.UnescapeString(r.report(t))
	for _, want := range []string{"Lustre (rehearsed on simfs)", "lctl set_param debug=+dlmtrace", "lctl dk", "ldlm.dump_namespaces",
		"/proc/PID/stack", "echo t > /proc/sysrq-trigger"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report's ticket section lacks %q", want)
		}
	}
}

// lostGrant: locker 0 (node 0) holds from the start until +2s; locker 1 (node 1) asks at +1s.
const lostGrant = `# description: locker 1 on node 1 waits for locker 0 on node 0, who releases at +2s
procs 2
all: file@{file}
0: write@+0s
0: release@+2s
1: write@+1s style=wait
1: release
all: stop
`

// TestDropGrant: the server grants locker 1 when locker 0 releases, but the completion never
// reaches node 1: locker 1 stays in F_SETLKW while the observer on node 0 names it as holder.
// The same signature as GlusterFS with a stopped client, here without stopping anything.
func TestDropGrant(t *testing.T) {
	s := startSimfs(t, 2, "-fault", "drop-grant:node=1")
	r := startRun(t, s.files(t, "lost"), lostGrant, "-timeout", "6s")
	r.wait(t)
	r.expect(t, "lost-callback", 4)
	pid1 := pidOf(t, r.trace, 1)
	var release int64
	for _, h := range spans(r.trace, semconv.SpanHold) {
		if lockerOf(h) == 0 {
			release = h.End
		}
	}
	var seen bool
	for _, o := range spans(r.trace, semconv.SpanObserver) {
		for _, e := range o.Events {
			if e.Name == semconv.EventObserved && e.Time >= release && e.Attrs.IntOr(semconv.LockOwnerPID, 0) == pid1 &&
				strings.HasSuffix(o.Resource.Str(semconv.FSMountPoint), "node0") {
				seen = true
			}
		}
	}
	if !seen {
		t.Errorf("the observer on node 0 never named locker 1 (pid %d) as holder after locker 0's release", pid1)
	}
	if a := spans(r.trace, semconv.SpanAcquire); len(a) < 2 || a[len(a)-1].Attrs.Str(semconv.LockOutcome) != semconv.OutcomeBlocked.String() {
		t.Errorf("locker 1's attempt did not end blocked")
	}
	var undelivered bool
	for _, l := range r.table(t).Locks {
		undelivered = undelivered || (l.State == locktable.Undelivered && l.PID == pid1 && l.Node == 1)
	}
	if !undelivered {
		t.Errorf("the lock table has no undelivered lock of locker 1 on node 1")
	}
	// The table is in the trace too, as the snapshot's events.
	var inTrace, dropped bool
	for _, sn := range spans(r.trace, semconv.SpanSnapshot) {
		for _, e := range sn.Events {
			inTrace = inTrace || (e.Name == semconv.EventSimfsLock && e.Attrs.Str(semconv.SimfsState) == "undelivered")
			dropped = dropped || (e.Name == semconv.EventSimfsEvent && strings.Contains(e.Attrs.Str(semconv.SimfsWhat), "completion dropped"))
		}
	}
	if !inTrace || !dropped {
		t.Errorf("the snapshot lacks the lock table's undelivered lock (%v) or the dropped completion (%v)", inTrace, dropped)
	}
}

// ghost: locker 0 holds and releases; locker 1 asks after the release.
const ghost = `# description: locker 0 on node 0 holds and releases at +1s; locker 1 on node 1 asks at +1.5s
procs 2
all: file@{file}
0: write@+0s
0: release@+1s
0: sleep 10s
1: write@+1.5s style=wait
1: release
all: stop
`

// TestGhost: the server acknowledges locker 0's unlock but keeps the lock (LU-12828): locker 1
// blocks behind a holder that released: stale holder, the release instant in the evidence.
// (Locker 0 stays alive: through FUSE the kernel turns the pid of a process that has exited into
// 0, so a ghost of a dead holder reads as an unknown pid, where Lustre would still name it.)
func TestGhost(t *testing.T) {
	s := startSimfs(t, 2, "-fault", "ghost:node=0")
	r := startRun(t, s.files(t, "ghost"), ghost, "-timeout", "6s")
	r.wait(t)
	r.expect(t, "stale-holder", 4)
	f := r.finding("stale-holder")
	if f == nil {
		t.Fatal("no stale-holder finding")
	}
	text := f.Summary
	for _, e := range f.Evidence {
		text += "\n" + e.Text
	}
	if !strings.Contains(text, "releas") {
		t.Errorf("the stale-holder finding does not cite locker 0's release:\n%s", text)
	}
	var ghosts int
	for _, l := range r.table(t).Locks {
		if l.State == locktable.Ghost && l.Node == 0 {
			ghosts++
		}
	}
	if ghosts != 1 {
		t.Errorf("%d ghost locks of node 0 in the lock table, want 1", ghosts)
	}
}

// flockPosix: locker 0 takes flock, locker 1 a posix lock on the same file, one node each.
const flockPosix = `# description: a flock holder on node 0 and a posix waiter on node 1 on one file
procs 2
all: file@{file}
0: write@+0s kind=flock
0: release@+4s kind=flock
1: write@+500ms kind=posix style=wait
1: release kind=posix
all: stop
`

// TestFlockBlocksPosix: on Lustre flock and fcntl locks share one resource: the posix waiter
// blocks behind the flock holder, and that is no lost wake-up (on a local file system the two
// kinds never conflict, so a posix waiter under a flock lock would be one).
func TestFlockBlocksPosix(t *testing.T) {
	s := startSimfs(t, 2)
	r := startRun(t, s.files(t, "kinds"), flockPosix, "-timeout", "10s")
	r.wait(t)
	r.expect(t, "healthy", 0)
	var waited bool
	for _, a := range spans(r.trace, semconv.SpanAcquire) {
		if lockerOf(a) == 1 && a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted.String() && a.End-a.Start > 3e9 {
			waited = true
		}
	}
	if !waited {
		t.Errorf("the posix waiter did not wait for the flock holder's release")
	}
	for _, f := range r.view.Findings {
		if f.Class == "lost-wakeup" || f.Class == "lost-callback" {
			t.Errorf("finding %s: %s", f.Class, f.Summary)
		}
	}
}
