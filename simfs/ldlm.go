package simfs

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/lockprobe/lockprobe/simfs/locktable"
)

// eof is the inclusive end of a range that runs to the end of the file (FUSE's OFFSET_MAX).
const eof = uint64(1<<63 - 1)

// Request is one lock call as it reaches the manager from a node's mount.
type Request struct {
	Node  int
	Ino   uint64
	Path  string // for the dump only
	Fh    uint64 // the open file it came through
	Owner uint64 // the kernel's lock owner id (files_struct for posix, the open file for OFD/flock)
	Flock bool   // flock(2), FUSE_LK_FLOCK: whole file
	PID   uint32 // the caller's process id in simfs's pid namespace
	Type  uint32 // syscall.F_RDLCK | F_WRLCK | F_UNLCK
	Start uint64
	End   uint64 // inclusive
}

// ownerKey is a lock owner as the server knows it: the kernel's owner id on one node (client).
// flock and fcntl owners are told apart, as Lustre's are (the open file versus files_struct).
type ownerKey struct {
	node  int
	owner uint64
	flock bool
}

func (r *Request) key() ownerKey { return ownerKey{r.Node, r.Owner, r.Flock} }

// lock is one granted lock or one waiting request.
type lock struct {
	Request
	id        uint64
	state     locktable.State
	enqueued  time.Time
	granted   time.Time
	blockedBy uint64
	done      chan syscall.Errno // a waiter's completion; nil for a lock granted at once
}

func (l *lock) conflicts(o *Request) bool {
	if l.key() == o.key() || (l.Type != syscall.F_WRLCK && o.Type != syscall.F_WRLCK) {
		return false
	}
	return l.Start <= o.End && o.Start <= l.End
}

// resource is one file's locks: LDLM's resource, shared by flock and fcntl locks.
type resource struct {
	ino     uint64
	granted []*lock // granted, undelivered, delayed and ghost locks: all count as held
	waiting []*lock // in arrival order
}

type faultState struct {
	Fault
	used      int
	trigger   time.Time // when the trigger fired
	scheduled bool
}

// Manager is the lock server of every node. Its methods are safe for concurrent use.
type Manager struct {
	mode   Mode
	detect Detect
	now    func() time.Time

	mu      sync.Mutex
	res     map[uint64]*resource
	nextID  uint64
	first   time.Time // the first lock request served: faults' after= counts from here
	faults  []*faultState
	epoch   map[int]int // per node: evictions so far
	events  []locktable.Event
	closing bool
}

// maxEvents bounds the event log kept for the dump.
const maxEvents = 10000

// NewManager returns a lock server with the mode's semantics, a deadlock detector and faults.
// now is the clock (time.Now when nil).
func NewManager(mode Mode, detect Detect, faults []Fault, now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	m := &Manager{mode: mode, detect: detect, now: now, res: map[uint64]*resource{}, epoch: map[int]int{}}
	for _, f := range faults {
		m.faults = append(m.faults, &faultState{Fault: f})
	}
	return m
}

// Epoch returns the node's eviction count; a file opened at one epoch is stale at the next.
func (m *Manager) Epoch(node int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch[node]
}

// Stale reports whether a file the node opened at epoch has outlived an eviction.
func (m *Manager) Stale(node, epoch int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch[node] != epoch
}

func (m *Manager) resource(ino uint64) *resource {
	r := m.res[ino]
	if r == nil {
		r = &resource{ino: ino}
		m.res[ino] = r
	}
	return r
}

// started notes the first request and schedules the faults that fire on time alone.
func (m *Manager) started(now time.Time) {
	if !m.first.IsZero() {
		return
	}
	m.first = now
	for _, f := range m.faults {
		if f.Kind == FaultEvict && f.On == TriggerNone {
			m.scheduleEvict(f, f.After)
		}
	}
}

func (m *Manager) scheduleEvict(f *faultState, after time.Duration) {
	if f.scheduled {
		return
	}
	f.scheduled = true
	time.AfterFunc(after, func() { m.evict(f.Node, "evicted by "+f.Fault.String()) })
}

// active returns the first fault of kind that acts on a request of node now, and counts a use.
func (m *Manager) active(kind FaultKind, node int, now time.Time) *faultState {
	for _, f := range m.faults {
		if f.Kind != kind || (f.Node != AnyNode && f.Node != node) || (f.Count > 0 && f.used >= f.Count) {
			continue
		}
		if m.first.IsZero() || now.Before(m.first.Add(f.After)) {
			continue
		}
		f.used++
		return f
	}
	return nil
}

// detector is the deadlock detection that applies to a request of node.
func (m *Manager) detector(node int, now time.Time) Detect {
	if m.active(FaultNoDeadlockDetect, node, now) != nil {
		return DetectOff
	}
	if m.active(FaultFirstBlockerOnly, node, now) != nil {
		return DetectFirst
	}
	return m.detect
}

func (m *Manager) event(l *lock, node int, format string, args ...any) {
	e := locktable.Event{At: m.now(), Node: node, What: fmt.Sprintf(format, args...)}
	if l != nil {
		e.Lock = l.id
	}
	if len(m.events) >= maxEvents {
		m.events = m.events[1:]
	}
	m.events = append(m.events, e)
}

// Test answers F_GETLK: the first lock held by another owner that conflicts with r.
func (m *Manager) Test(r Request) (Request, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started(m.now())
	res := m.res[r.Ino]
	if res == nil {
		return Request{}, false
	}
	for _, g := range res.granted {
		if g.conflicts(&r) {
			return g.Request, true
		}
	}
	return Request{}, false
}

// Lock serves F_SETLK (wait false) and F_SETLKW (wait true), unlocks included. A waiter waits
// for its completion with no timeout and no re-poll; ctx ends the wait (the kernel interrupts
// the request: a signal, the process killed) and the request is cancelled, EINTR.
func (m *Manager) Lock(ctx context.Context, r Request, wait bool) syscall.Errno {
	m.mu.Lock()
	now := m.now()
	m.started(now)
	if m.closing {
		m.mu.Unlock()
		return syscall.EIO
	}
	res := m.resource(r.Ino)
	if r.Type == syscall.F_UNLCK {
		if f := m.active(FaultGhost, r.Node, now); f != nil {
			m.ghost(res, &r, f)
		} else {
			m.apply(res, &lock{Request: r})
		}
		m.reprocess(res)
		m.mu.Unlock()
		return 0
	}
	m.nextID++
	l := &lock{Request: r, id: m.nextID, enqueued: now}
	blockers := m.blockers(res, &r)
	if len(blockers) == 0 {
		l.state, l.granted = locktable.Granted, now
		m.apply(res, l)
		m.mu.Unlock()
		return 0
	}
	if !wait {
		m.mu.Unlock()
		return syscall.EAGAIN
	}
	if det := m.detector(r.Node, now); det != DetectOff && m.cycle(&r, blockers, det) {
		m.event(l, r.Node, "EDEADLK: the request would close a cycle (detection %s)", det)
		m.mu.Unlock()
		return syscall.EDEADLK
	}
	l.state, l.blockedBy, l.done = locktable.Waiting, blockers[0].id, make(chan syscall.Errno, 1)
	res.waiting = append(res.waiting, l)
	m.blocked(blockers, &r, now)
	m.mu.Unlock()

	select {
	case errno := <-l.done:
		return errno
	case <-ctx.Done():
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case errno := <-l.done: // delivered while we were cancelled
		return errno
	default:
	}
	// The client cancels its request; a lock granted but never delivered goes with it.
	res.waiting = slices.DeleteFunc(res.waiting, func(x *lock) bool { return x == l })
	n := len(res.granted)
	res.granted = slices.DeleteFunc(res.granted, func(x *lock) bool { return x == l })
	if len(res.granted) != n {
		m.event(l, r.Node, "request interrupted after an undelivered grant: lock cancelled")
		m.reprocess(res)
	}
	return syscall.EINTR
}

// blocked sets off evict faults triggered by a request blocking behind their node's locks.
func (m *Manager) blocked(blockers []*lock, r *Request, now time.Time) {
	for _, f := range m.faults {
		if f.Kind != FaultEvict || f.On != TriggerBlock || f.scheduled || f.Node == r.Node {
			continue
		}
		for _, b := range blockers {
			if b.Node == f.Node {
				f.trigger = now
				m.event(b, f.Node, "a request of node %d blocks behind node %d's lock: %s fires in %s", r.Node, f.Node, f.Fault, f.After)
				m.scheduleEvict(f, f.After)
				break
			}
		}
	}
}

// blockers returns the granted locks that conflict with r, in the resource's order.
func (m *Manager) blockers(res *resource, r *Request) []*lock {
	var out []*lock
	for _, g := range res.granted {
		if g.conflicts(r) {
			out = append(out, g)
		}
	}
	return out
}

// cycle reports whether r, blocked by blockers, would wait for itself. DetectFirst walks one
// chain: the owner of the first blocker, the request that owner waits on, that request's first
// blocker, ... (Lustre's ldlm_flock_deadlock). DetectAll searches every blocker of every waiter.
func (m *Manager) cycle(r *Request, blockers []*lock, det Detect) bool {
	self := r.key()
	waitsOf := func(o ownerKey) []*lock {
		var out []*lock
		for _, res := range m.res {
			for _, w := range res.waiting {
				if w.key() == o {
					out = append(out, w)
				}
			}
		}
		slices.SortFunc(out, func(a, b *lock) int { return int(a.id - b.id) })
		return out
	}
	if det == DetectFirst {
		o := blockers[0].key()
		for range m.nextID + 1 { // a chain longer than the number of locks has looped elsewhere
			if o == self {
				return true
			}
			ws := waitsOf(o)
			if len(ws) == 0 {
				return false
			}
			bs := m.blockers(m.res[ws[0].Ino], &ws[0].Request)
			if len(bs) == 0 {
				return false
			}
			o = bs[0].key()
		}
		return false
	}
	seen := map[ownerKey]bool{}
	queue := []ownerKey{}
	for _, b := range blockers {
		queue = append(queue, b.key())
	}
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		if o == self {
			return true
		}
		if seen[o] {
			continue
		}
		seen[o] = true
		for _, w := range waitsOf(o) {
			for _, b := range m.blockers(m.res[w.Ino], &w.Request) {
				queue = append(queue, b.key())
			}
		}
	}
	return false
}

// apply puts l into the resource as its owner's lock over its range, replacing (and splitting)
// what the owner held there; an unlock only removes. Ghost locks stay: nothing of the owner's
// reaches them any more.
func (m *Manager) apply(res *resource, l *lock) {
	var kept []*lock
	for _, g := range res.granted {
		if g.key() != l.key() || g.state == locktable.Ghost || g.End < l.Start || l.End < g.Start {
			kept = append(kept, g)
			continue
		}
		if g.Start < l.Start {
			left := *g
			left.End = l.Start - 1
			kept = append(kept, &left)
		}
		if g.End > l.End {
			right := *g
			right.Start = l.End + 1
			kept = append(kept, &right)
		}
	}
	if l.Type != syscall.F_UNLCK {
		kept = append(kept, l)
	}
	res.granted = kept
}

// ghost acknowledges an unlock but leaves the owner's locks in its range on the server.
func (m *Manager) ghost(res *resource, r *Request, f *faultState) {
	for _, g := range res.granted {
		if g.key() == r.key() && g.state != locktable.Ghost && g.Start <= r.End && r.Start <= g.End {
			g.state = locktable.Ghost
			m.event(g, r.Node, "unlock acknowledged, lock left on the server (%s)", f.Fault)
		}
	}
}

// reprocess grants the waiters that no granted lock blocks any more, in arrival order, and
// sends their completions, unless a fault drops or delays them.
func (m *Manager) reprocess(res *resource) {
	now := m.now()
	var still []*lock
	for _, w := range res.waiting {
		bs := m.blockers(res, &w.Request)
		if len(bs) > 0 {
			w.blockedBy = bs[0].id
			still = append(still, w)
			continue
		}
		w.granted, w.blockedBy = now, 0
		m.apply(res, w)
		switch f := m.completionFault(w.Node, now); {
		case f == nil:
			w.state = locktable.Granted
			w.done <- 0
		case f.Kind == FaultDropGrant:
			w.state = locktable.Undelivered
			m.event(w, w.Node, "granted; completion dropped (%s)", f.Fault)
		default:
			w.state = locktable.Delayed
			m.event(w, w.Node, "granted; completion delayed %s (%s)", f.Delay, f.Fault)
			time.AfterFunc(f.Delay, func() { m.deliver(w) })
		}
	}
	res.waiting = still
}

func (m *Manager) completionFault(node int, now time.Time) *faultState {
	if f := m.active(FaultDropGrant, node, now); f != nil {
		return f
	}
	return m.active(FaultDelayGrant, node, now)
}

// deliver sends a delayed completion, if the lock is still there.
func (m *Manager) deliver(w *lock) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.state != locktable.Delayed {
		return
	}
	w.state = locktable.Granted
	m.event(w, w.Node, "delayed completion delivered")
	w.done <- 0
}

// Flush drops the posix locks of owner on the file: the kernel flushes on every close of a
// descriptor, and closing any descriptor ends a process's posix locks on the file.
func (m *Manager) Flush(node int, ino, owner uint64) {
	m.drop(ino, func(l *lock) bool { return l.Node == node && l.Owner == owner && !l.Flock })
}

// Release drops what the last close of one open file ends: its flock lock (flockOwner, when the
// kernel says so) and every lock taken through it (OFD locks are owned by the open file).
func (m *Manager) Release(node int, ino, fh uint64, flockUnlock bool, flockOwner uint64) {
	m.drop(ino, func(l *lock) bool {
		return l.Node == node && (l.Fh == fh || (flockUnlock && l.Flock && l.Owner == flockOwner))
	})
}

func (m *Manager) drop(ino uint64, match func(*lock) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	res := m.res[ino]
	if res == nil {
		return
	}
	n := len(res.granted)
	res.granted = slices.DeleteFunc(res.granted, func(l *lock) bool {
		return match(l) && l.state != locktable.Ghost
	})
	if len(res.granted) != n {
		m.reprocess(res)
	}
}

// evict removes every lock of node (ghosts too) and fails its waiters with EIO; the files the
// node opened before fail their lock calls from now on (Stale).
func (m *Manager) evict(node int, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return
	}
	m.epoch[node]++
	var locks, waiters int
	for _, res := range m.res {
		n := len(res.granted)
		res.granted = slices.DeleteFunc(res.granted, func(l *lock) bool { return l.Node == node })
		locks += n - len(res.granted)
		res.waiting = slices.DeleteFunc(res.waiting, func(l *lock) bool {
			if l.Node != node {
				return false
			}
			l.done <- syscall.EIO
			waiters++
			return true
		})
	}
	m.event(nil, node, "%s: %d locks dropped, %d waiters failed with EIO", why, locks, waiters)
	for _, res := range m.res {
		m.reprocess(res)
	}
}

// Evict evicts node now.
func (m *Manager) Evict(node int) { m.evict(node, "evicted") }

// Close fails every waiter with EIO: the file system is going away.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closing = true
	for _, res := range m.res {
		for _, w := range res.waiting {
			w.done <- syscall.EIO
		}
		res.waiting = nil
	}
}

// Table returns the lock table for a dump.
func (m *Manager) Table(faults []Fault) *locktable.Table {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &locktable.Table{At: m.now(), Mode: m.mode.String(), Detect: m.detect.String(), Faults: []string{}, Locks: []locktable.Lock{}, Events: slices.Clone(m.events)}
	for _, f := range faults {
		t.Faults = append(t.Faults, f.String())
	}
	inos := make([]uint64, 0, len(m.res))
	for ino := range m.res {
		inos = append(inos, ino)
	}
	slices.Sort(inos)
	for _, ino := range inos {
		res := m.res[ino]
		for _, l := range append(slices.Clone(res.granted), res.waiting...) {
			t.Locks = append(t.Locks, l.entry())
		}
	}
	if t.Events == nil {
		t.Events = []locktable.Event{}
	}
	return t
}

func (l *lock) entry() locktable.Lock {
	e := locktable.Lock{ID: l.id, State: l.state, Node: l.Node, PID: int64(l.PID), Kind: "fcntl", Type: "read",
		Start: int64(l.Start), End: int64(l.End), Path: l.Path, Owner: l.Owner, Enqueued: l.enqueued, Granted: l.granted, BlockedBy: l.blockedBy}
	if l.Flock {
		e.Kind = "flock"
	}
	if l.Type == syscall.F_WRLCK {
		e.Type = "write"
	}
	if l.End >= eof {
		e.End = -1
	}
	return e
}
