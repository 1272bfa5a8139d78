package simfs

import (
	"strings"
	"testing"

	"github.com/lockprobe/lockprobe/reports"
	"github.com/lockprobe/lockprobe/semconv"
)

// evictHolder: locker 0 (node 0) holds until +3s; locker 1 (node 1) waits from +1s.
const evictHolder = `# description: locker 0 on node 0 holds until +3s; locker 1 on node 1 waits from +1s
procs 2
all: file@{file}
0: write@+0s
0: release@+3s
1: write@+1s style=wait
1: release@+4s
all: stop
`

// TestEvictHolder: node 0 is evicted 500 ms after locker 1 blocks behind its lock: its locks
// vanish, locker 1 is granted, and locker 0, which went on believing it held, fails its unlock
// with EIO: exclusion violated, with the node's failing calls in the evidence.
func TestEvictHolder(t *testing.T) {
	s := startSimfs(t, 2, "-fault", "evict:node=0,on=block,after=500ms")
	r := startRun(t, s.files(t, "evict"), evictHolder, "-timeout", "8s")
	r.wait(t)
	r.expect(t, "exclusion-violated", 5)
	var granted bool
	for _, a := range spans(r.trace, semconv.SpanAcquire) {
		if lockerOf(a) == 1 && a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted.String() && a.End-a.Start > 4e8 {
			granted = true
		}
	}
	if !granted {
		t.Errorf("locker 1 was not granted after waiting for the eviction")
	}
	var eio bool
	for _, c := range spans(r.trace, semconv.SpanCommand) {
		if lockerOf(c) == 0 && strings.Contains(c.Attrs.Str(semconv.LockErrno), "EIO") {
			eio = true
		}
	}
	if !eio {
		for _, c := range spans(r.trace, semconv.SpanCommand) {
			t.Logf("command of locker %d: %v", lockerOf(c), c.Attrs)
		}
		t.Errorf("locker 0's unlock after the eviction did not fail with EIO")
	}
	if f := r.finding("exclusion-violated"); f == nil || !strings.Contains(f.Summary+evidence(f.Evidence), "EIO") {
		t.Errorf("the exclusion finding does not cite node 0's EIO")
	}
}

// bothHold: one locker per node asks for the write lock at once.
const bothHold = `# description: a locker on each of two nodes takes the write lock at once
procs 2
all: file@{file}
all: write@+0s
all: release@+1s
all: stop
`

// TestLocalflock: with -o localflock each node's kernel arbitrates its own locks: both nodes'
// lockers get the write lock. Exclusion is violated, and the report says the mount option is the
// cause, not a bug of the lock manager.
func TestLocalflock(t *testing.T) {
	s := startSimfs(t, 2, "-mode", "localflock")
	r := startRun(t, s.files(t, "local"), bothHold, "-timeout", "8s")
	r.wait(t)
	r.expect(t, "exclusion-violated", 5)
	f := r.finding("exclusion-violated")
	if f == nil || f.Cause != "mount-option" || !strings.Contains(f.Summary, "mount option localflock") {
		t.Fatalf("the exclusion finding does not name the mount option as its cause: %+v", f)
	}
	if !strings.Contains(r.stdout.String(), "mount option localflock") || !strings.Contains(r.report(t), "mount option localflock") {
		t.Errorf("the summary or the report does not say that the mount option is the cause")
	}
}

// missedCycle: locker 3 holds byte 3 first; lockers 0, 1, 2 hold bytes 0, 1, 2; locker 0 wants
// bytes 1-3 (blocked first by locker 3, who never waits, and by locker 1), locker 1 byte 2,
// locker 2 byte 0: a cycle 0 → 1 → 2 → 0 that only locker 0's second blocker closes.
const missedCycle = `# description: a 3-cycle through a waiter's second blocker: Lustre's detection (LU-13991) misses it
procs 4
all: file@{file}
3: write@+0s range=3:1
0: write@+300ms range=0:1
1: write@+300ms range=1:1
2: write@+300ms range=2:1
0: write@+600ms range=1:3 style=wait
1: write@+800ms range=2:1 style=wait
2: write@+1s range=0:1 style=wait
3: release@+6s
all: release
all: stop
`

// caughtCycle: lockers 0, 1, 2 hold bytes 0, 1, 2 and want the next one: the last request
// closes a cycle of first blockers.
const caughtCycle = `# description: a 3-cycle of first blockers: Lustre answers the closing request EDEADLK
procs 3
all: file@{file}
all: write@+0s range={id}:1
0: write@+300ms range=1:1 style=wait
1: write@+500ms range=2:1 style=wait
2: write@+700ms range=0:1 style=wait
all: release
all: stop
`

// TestDeadlockDetection: the server follows only the first conflicting lock of each waiter: a
// cycle through a second blocker hangs (deadlock, exit 3), a cycle of first blockers gets
// EDEADLK (fs-detected-deadlock, exit 0).
func TestDeadlockDetection(t *testing.T) {
	t.Run("missed", func(t *testing.T) {
		s := startSimfs(t, 2)
		r := startRun(t, s.files(t, "ring"), missedCycle, "-timeout", "8s")
		r.wait(t)
		r.expect(t, "deadlock", 3)
		f := r.finding("deadlock")
		if f == nil || len(f.Lockers) != 3 {
			t.Fatalf("deadlock finding %+v: want lockers 0, 1 and 2", f)
		}
		for _, a := range spans(r.trace, semconv.SpanAcquire) {
			if a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeDeadlock.String() {
				t.Errorf("locker %d got EDEADLK: the detection should have missed this cycle", lockerOf(a))
			}
		}
	})
	t.Run("caught", func(t *testing.T) {
		s := startSimfs(t, 2)
		r := startRun(t, s.files(t, "ring"), caughtCycle, "-timeout", "8s")
		r.wait(t)
		r.expect(t, "fs-detected-deadlock", 0)
		var edeadlk int
		for _, a := range spans(r.trace, semconv.SpanAcquire) {
			if a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeDeadlock.String() {
				edeadlk++
			}
		}
		if edeadlk != 1 {
			t.Errorf("%d attempts got EDEADLK, want the one that closed the cycle", edeadlk)
		}
	})
}

func evidence(es []reports.EvidenceView) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Text + "\n")
	}
	return b.String()
}
