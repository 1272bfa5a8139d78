package probe

import "sync"

// A storm cycle's spans live in three values the lock thread makes (the prepared lock with
// the attempt's span, the hold with its span, the release's span): about 1.1 KB per cycle.
// Made new each time, they were the lock thread's four allocations per cycle, and in a real
// storm the memory they took was fresh: a locker's heap stays under the collector's first goal
// for the whole storm, so every page was touched for the first time and faulted in on the lock
// thread, inside the hold or the relock gap (a fifth of the lockers' CPU over the storm's
// window was page faults, `perf record -a -g` on a 10-locker storm). So the sender, once it has
// rendered a span's final record, hands its value back, and the lock thread takes the next
// cycle's from what came back: the same warm memory, no collector work.

// recycler is a value holding a span that may be reused once the span's final record is
// rendered. Nothing but the lock thread keeps it after that: the watcher of an attempt was
// stopped before its end (watcher.stop waits for its goroutine), a hold left the executor's
// list when it ended, and a release is recorded once it is over.
type recycler interface {
	recycle()
}

// freeList keeps values of one kind handed back by the sender for the lock thread to reuse.
type freeList[T any] struct {
	mu   sync.Mutex
	free []*T
}

// maxFree bounds what a free list keeps: a burst's worth; more is left to the collector.
const maxFree = 1 << 12

// get returns a zero value, one handed back if there is one.
func (f *freeList[T]) get() *T {
	f.mu.Lock()
	n := len(f.free)
	if n == 0 {
		f.mu.Unlock()
		return new(T)
	}
	p := f.free[n-1]
	f.free[n-1] = nil
	f.free = f.free[:n-1]
	f.mu.Unlock()
	var zero T
	*p = zero
	return p
}

// put hands p back.
func (f *freeList[T]) put(p *T) {
	f.mu.Lock()
	if len(f.free) < maxFree {
		f.free = append(f.free, p)
	}
	f.mu.Unlock()
}

// cycleValues are the free lists of a locker's lock cycle values.
type cycleValues struct {
	locks freeList[preparedLock]
	holds freeList[holdSpan]
	cmds  freeList[cmdSpan]
}

func (p *preparedLock) recycle() { p.values.locks.put(p) }
func (h *holdSpan) recycle()     { h.values.holds.put(h) }
func (c *cmdSpan) recycle()      { c.values.cmds.put(c) }

// recycleEnded hands back the values of the spans whose final records items held: called by
// the sender once it has rendered them.
func recycleEnded(items []item) {
	for _, it := range items {
		if it.op == opEnd && it.span.box != nil {
			it.span.box.recycle()
		}
	}
}
