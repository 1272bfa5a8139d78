package simfs

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/simfs/locktable"
)

// req is a posix write request of owner (on node owner) for [start, end].
func req(owner int, start, end uint64) Request {
	return Request{Node: owner, Ino: 2, Path: "/f", Fh: uint64(owner), Owner: uint64(100 + owner), PID: uint32(1000 + owner), Type: syscall.F_WRLCK, Start: start, End: end}
}

// waitLock starts a blocking request and returns its result channel once it is queued (or done).
func waitLock(t *testing.T, m *Manager, ctx context.Context, r Request) chan syscall.Errno {
	t.Helper()
	out := make(chan syscall.Errno, 1)
	go func() { out <- m.Lock(ctx, r, true) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if len(out) > 0 {
			return out
		}
		for _, l := range m.Table(nil).Locks {
			if l.Owner == r.Owner && l.State == locktable.Waiting {
				return out
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("request of owner %d neither queued nor done", r.Owner)
	return out
}

func mustLock(t *testing.T, m *Manager, r Request) {
	t.Helper()
	if errno := m.Lock(context.Background(), r, false); errno != 0 {
		t.Fatalf("lock %+v: %v", r, errno)
	}
}

func expectBlocked(t *testing.T, c chan syscall.Errno, what string) {
	t.Helper()
	select {
	case errno := <-c:
		t.Fatalf("%s: ended %v, want still waiting", what, errno)
	case <-time.After(20 * time.Millisecond):
	}
}

func expectDone(t *testing.T, c chan syscall.Errno, want syscall.Errno, what string) {
	t.Helper()
	select {
	case errno := <-c:
		if errno != want {
			t.Fatalf("%s: %v, want %v", what, errno, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still waiting, want %v", what, want)
	}
}

func TestFlockAndFcntlShareOneResource(t *testing.T) {
	m := NewManager(ModeFlock, DetectFirst, nil, nil)
	fl := req(0, 0, eof)
	fl.Flock = true
	mustLock(t, m, fl)
	if errno := m.Lock(context.Background(), req(1, 10, 10), false); errno != syscall.EAGAIN {
		t.Fatalf("posix write under another node's flock: %v, want EAGAIN", errno)
	}
	// The same process's posix lock conflicts with its own flock (another owner to the server).
	own := req(0, 10, 10)
	if errno := m.Lock(context.Background(), own, false); errno != syscall.EAGAIN {
		t.Fatalf("own posix write under own flock: %v, want EAGAIN", errno)
	}
	held, ok := m.Test(req(1, 5, 5))
	if !ok || held.PID != 1000 || !held.Flock {
		t.Fatalf("Test = %+v, %v; want the flock holder", held, ok)
	}
	// Readers share.
	m2 := NewManager(ModeFlock, DetectFirst, nil, nil)
	r0, r1 := req(0, 0, eof), req(1, 0, eof)
	r0.Type, r1.Type = syscall.F_RDLCK, syscall.F_RDLCK
	mustLock(t, m2, r0)
	mustLock(t, m2, r1)
}

func TestWaiterGrantedOnUnlockAndFlushAndRelease(t *testing.T) {
	m := NewManager(ModeFlock, DetectFirst, nil, nil)
	mustLock(t, m, req(0, 0, 9))
	w := waitLock(t, m, context.Background(), req(1, 5, 5))
	unl := req(0, 0, 4)
	unl.Type = syscall.F_UNLCK
	mustLock(t, m, unl)
	expectBlocked(t, w, "waiter after a partial unlock that leaves its byte locked")
	m.Flush(0, 2, 100) // close of any descriptor: the owner's posix locks end
	expectDone(t, w, 0, "waiter after the holder's flush")

	fl := req(2, 0, eof)
	fl.Flock, fl.Fh = true, 77
	m3 := NewManager(ModeFlock, DetectFirst, nil, nil)
	mustLock(t, m3, fl)
	w3 := waitLock(t, m3, context.Background(), req(1, 0, 0))
	m3.Flush(2, 2, fl.Owner) // a flush ends posix locks only
	expectBlocked(t, w3, "waiter after a flush of the flock holder")
	m3.Release(2, 2, 77, true, fl.Owner)
	expectDone(t, w3, 0, "waiter after the flock holder's release")
}

func TestDeadlockDetection(t *testing.T) {
	// A caught 3-cycle: A holds 0 and wants 1, B holds 1 and wants 2, C holds 2 and wants 0.
	for _, det := range []Detect{DetectFirst, DetectAll} {
		m := NewManager(ModeFlock, det, nil, nil)
		mustLock(t, m, req(0, 0, 0))
		mustLock(t, m, req(1, 1, 1))
		mustLock(t, m, req(2, 2, 2))
		waitLock(t, m, context.Background(), req(0, 1, 1))
		waitLock(t, m, context.Background(), req(1, 2, 2))
		if errno := m.Lock(context.Background(), req(2, 0, 0), true); errno != syscall.EDEADLK {
			t.Errorf("detect %s: closing request of a simple 3-cycle: %v, want EDEADLK", det, errno)
		}
	}
	// The cycle LU-13991 misses: D (owner 3) holds byte 3 first; A holds 0 and wants 1-3, so its
	// first blocker is D, who never waits; B holds 1 and wants 2; C holds 2 and wants 0.
	for _, tc := range []struct {
		det  Detect
		want syscall.Errno
	}{{DetectFirst, 0}, {DetectAll, syscall.EDEADLK}, {DetectOff, 0}} {
		m := NewManager(ModeFlock, tc.det, nil, nil)
		mustLock(t, m, req(3, 3, 3))
		mustLock(t, m, req(0, 0, 0))
		mustLock(t, m, req(1, 1, 1))
		mustLock(t, m, req(2, 2, 2))
		ctx, cancel := context.WithCancel(context.Background())
		waitLock(t, m, ctx, req(0, 1, 3))
		waitLock(t, m, ctx, req(1, 2, 2))
		c := waitLock(t, m, ctx, req(2, 0, 0))
		if tc.want == 0 {
			expectBlocked(t, c, "detect "+tc.det.String()+": C closing the cycle through A's second blocker")
		} else {
			expectDone(t, c, tc.want, "detect "+tc.det.String())
		}
		cancel()
	}
	// A fault turns detection off for one node.
	m := NewManager(ModeFlock, DetectAll, []Fault{{Kind: FaultNoDeadlockDetect, Node: 1}}, nil)
	mustLock(t, m, req(0, 0, 0))
	mustLock(t, m, req(1, 1, 1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waitLock(t, m, ctx, req(0, 1, 1))
	expectBlocked(t, waitLock(t, m, ctx, req(1, 0, 0)), "ABBA closed by node 1 under no-deadlock-detect:node=1")
}

func TestDropGrantAndInterrupt(t *testing.T) {
	m := NewManager(ModeFlock, DetectFirst, []Fault{{Kind: FaultDropGrant, Node: 1}}, nil)
	mustLock(t, m, req(0, 0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	w := waitLock(t, m, ctx, req(1, 0, 0))
	unl := req(0, 0, 0)
	unl.Type = syscall.F_UNLCK
	mustLock(t, m, unl)
	expectBlocked(t, w, "waiter whose completion was dropped")
	held, ok := m.Test(req(2, 0, 0))
	if !ok || held.Owner != 101 {
		t.Fatalf("Test after the dropped completion = %+v, %v; want the waiter (owner 101) as holder", held, ok)
	}
	cancel() // the kernel interrupts the request: the client cancels the lock it never learnt of
	expectDone(t, w, syscall.EINTR, "interrupted waiter")
	if _, ok := m.Test(req(2, 0, 0)); ok {
		t.Fatalf("the undelivered lock outlived its interrupted request")
	}
}

func TestGhostAndEvict(t *testing.T) {
	m := NewManager(ModeFlock, DetectFirst, []Fault{{Kind: FaultGhost, Node: 0, Count: 1}}, nil)
	mustLock(t, m, req(0, 0, 0))
	unl := req(0, 0, 0)
	unl.Type = syscall.F_UNLCK
	mustLock(t, m, unl) // acknowledged
	m.Flush(0, 2, 100)
	m.Release(0, 2, 0, false, 0)
	w := waitLock(t, m, context.Background(), req(1, 0, 0))
	expectBlocked(t, w, "waiter behind a ghost lock")
	e0 := m.Epoch(0)
	m.Evict(0)
	expectDone(t, w, 0, "waiter after the ghost's node was evicted")
	if !m.Stale(0, e0) || m.Stale(1, m.Epoch(1)) {
		t.Fatalf("Stale after evicting node 0: node 0 %v, node 1 %v", m.Stale(0, e0), m.Stale(1, m.Epoch(1)))
	}
	// Evicting a node fails its waiters with EIO.
	w2 := waitLock(t, m, context.Background(), req(0, 0, 0))
	m.Evict(0)
	expectDone(t, w2, syscall.EIO, "waiter of an evicted node")
	tbl := m.Table(nil)
	if len(tbl.Events) < 3 {
		t.Fatalf("events %+v: want the ghost and both evictions", tbl.Events)
	}
}

func TestEvictOnBlockAndDelayGrant(t *testing.T) {
	m := NewManager(ModeFlock, DetectFirst, []Fault{{Kind: FaultEvict, Node: 0, On: TriggerBlock, After: 10 * time.Millisecond}, {Kind: FaultDelayGrant, Node: 2, Delay: 50 * time.Millisecond}}, nil)
	mustLock(t, m, req(0, 0, 0))
	expectDone(t, waitLock(t, m, context.Background(), req(1, 0, 0)), 0, "waiter behind a node evicted on block")
	w := waitLock(t, m, context.Background(), req(2, 0, 0))
	unl := req(1, 0, 0)
	unl.Type = syscall.F_UNLCK
	mustLock(t, m, unl)
	expectBlocked(t, w, "delayed completion, just after the grant")
	expectDone(t, w, 0, "delayed completion")
}
