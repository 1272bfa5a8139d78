package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// TestEvidenceWhileWaiting checks what a bug ticket rests on, from one run in which locker 0
// holds a write lock for 1.5 s and lockers 1 and 2 wait for it, and a second in which the
// holder never lets go and the run ends at its timeout.
func TestEvidenceWhileWaiting(t *testing.T) {
	res := runScenario(t, `procs 3
all: file@{file}
0: write@+0s
0: sleep 1500ms
0: release
1-{last}: write@+300ms style=wait
1-{last}: sleep 200ms
1-{last}: releaseif
all: stop
`)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	pids := lockerPIDs(res.trace)
	for _, a := range spansNamed(res.trace, semconv.SpanAcquire) {
		id := a.Attrs.IntOr(semconv.LockerID, -1)
		if id == 0 {
			continue
		}
		// The first answer names whoever blocked it: locker 0, or the other waiter if that one
		// got the lock first. Each conflict event names a locker of this run with its pid.
		var conflicts []tracefile.Event
		for _, e := range a.Events {
			if e.Name == semconv.EventConflict {
				conflicts = append(conflicts, e)
			}
		}
		if len(conflicts) == 0 {
			t.Fatalf("locker %d waited %s and recorded no conflict owner", id, time.Duration(a.End-a.Start))
		}
		first := conflicts[0]
		owner := first.Attrs.IntOr(semconv.LockOwnerLockerID, -1)
		if first.Attrs.Str(semconv.LockOwnerClass) != semconv.OwnerLocker.String() || owner == id || owner < 0 {
			t.Errorf("locker %d: first conflict %+v, want another locker", id, first.Attrs)
		}
		if pid := first.Attrs.IntOr(semconv.LockOwnerPID, 0); pid != pids[owner] {
			t.Errorf("locker %d: owner pid %d, want locker %d's pid %d", id, pid, owner, pids[owner])
		}
		if first.Attrs.Str(semconv.LockOwnerMode) != semconv.ModeWrite.String() || first.Attrs.Str(semconv.LockOwnerSource) != "getlk" {
			t.Errorf("locker %d: owner mode %q source %q, want write from getlk", id, first.Attrs.Str(semconv.LockOwnerMode), first.Attrs.Str(semconv.LockOwnerSource))
		}
	}

	// The observer's timeline: every hold of the run appears as a change of write-mode holder.
	holders := map[int64]bool{}
	for _, s := range spansNamed(res.trace, semconv.SpanObserver) {
		for _, e := range s.Events {
			if e.Name == semconv.EventObserved && e.Attrs.Str(semconv.QueryMode) == semconv.ModeWrite.String() {
				holders[e.Attrs.IntOr(semconv.LockOwnerLockerID, -1)] = true
			}
		}
	}
	for id := int64(0); id < 3; id++ {
		if !holders[id] {
			t.Errorf("the observer never saw locker %d hold the lock (saw %v)", id, holders)
		}
	}
	if !holders[-1] {
		t.Errorf("the observer never saw the file free")
	}

	// Host facts in every locker's resource: the statfs magic of the temp dir's file system.
	fs, err := host.FileSystem(filepath.Dir(res.out))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spansNamed(res.trace, semconv.SpanLocker) {
		if got := s.Resource.Str(semconv.FSType); got != fs.MagicName || got == "" {
			t.Errorf("fs.type %q, want %q", got, fs.MagicName)
		}
		if s.Resource.Str(semconv.OSKernel) == "" {
			t.Error("no kernel release in the resource")
		}
	}
}

func lockerPIDs(tr *tracefile.Trace) map[int64]int64 {
	pids := map[int64]int64{}
	for _, s := range spansNamed(tr, semconv.SpanLocker) {
		pids[s.Resource.IntOr(semconv.LockerID, -1)] = s.Resource.IntOr(semconv.ProcessPID, 0)
	}
	return pids
}

// TestSnapshotOfBlockedLockers: the run times out with two lockers blocked behind a holder.
// The snapshot shows each waiter's thread asleep in the lock code, and /proc/locks with the
// waiters attached to the holder.
func TestSnapshotOfBlockedLockers(t *testing.T) {
	res := runBuiltin(t, "-scenario", "hold", "-procs", "3", "-timeout", "3s")
	tr, err := tracefile.Open(res.out)
	if err != nil {
		t.Fatal(err)
	}
	pids := lockerPIDs(tr)
	var snap *tracefile.Span
	for _, s := range tr.Spans {
		if s.Name == semconv.SpanSnapshot {
			snap = s
		}
	}
	if snap == nil {
		t.Fatal("no snapshot span")
	}
	states := map[int64]tracefile.Attrs{}
	var procLocks []tracefile.Attrs
	for _, e := range snap.Events {
		switch e.Name {
		case semconv.EventState:
			states[e.Attrs.IntOr(semconv.LockerID, -9)] = e.Attrs
		case semconv.EventProcLock:
			procLocks = append(procLocks, e.Attrs)
		}
	}
	for _, id := range []int64{1, 2} {
		st, ok := states[id]
		if !ok {
			t.Fatalf("no state of locker %d in the snapshot", id)
		}
		if st.Str(semconv.ProcState) != "S" && st.Str(semconv.ProcState) != "D" {
			t.Errorf("locker %d state %q, want S or D (asleep in the lock call)", id, st.Str(semconv.ProcState))
		}
		if w := st.Str(semconv.ProcWchan); !strings.Contains(w, "lock") && !strings.Contains(w, "setlk") {
			t.Errorf("locker %d wchan %q, want a lock function (fcntl_setlk)", id, w)
		}
		if len(st.Strings(semconv.ProcStack)) == 0 {
			t.Errorf("locker %d: no kernel stack", id)
		}
		if !strings.Contains(st.Str(semconv.ProcInfl), "write lock") {
			t.Errorf("locker %d: in-flight %q", id, st.Str(semconv.ProcInfl))
		}
	}
	// /proc/locks: locker 0 holds; 1 and 2 wait, attached (directly or behind each other) to it.
	var holderLine int64
	waiters := map[int64]int64{}
	for _, l := range procLocks {
		if l.IntOr(semconv.ProcLockBy, 0) == 0 {
			if l.IntOr(semconv.ProcLockPI, 0) == pids[0] {
				holderLine = l.IntOr(semconv.ProcLockID, 0)
			}
			continue
		}
		waiters[l.IntOr(semconv.ProcLockPI, 0)] = l.IntOr(semconv.ProcLockBy, 0)
	}
	if holderLine == 0 {
		t.Fatalf("locker 0 (pid %d) is not a holder in /proc/locks: %v", pids[0], procLocks)
	}
	for _, id := range []int64{1, 2} {
		if _, ok := waiters[pids[id]]; !ok {
			t.Errorf("locker %d (pid %d) is not a waiter in /proc/locks: %v", id, pids[id], procLocks)
		}
	}
}
