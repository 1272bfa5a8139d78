package probe

import (
	"sync"
	"time"
)

// queue is the outbox's FIFO of items, bounded at max. A buffered channel of that bound
// allocated its whole buffer up front — 65 536 items of 80 bytes, 5 MiB per locker, full of
// pointers the GC scanned page by page: at start-up that was more than half of each locker's
// page faults and of its CPU (1000 lockers starting on two cores pay it a thousand times).
// This one takes memory as items come and keeps what a burst needed for the next.
type queue struct {
	mu    sync.Mutex
	items []item // items[head:] are queued
	head  int
	max   int
	// avail holds a token while items may be queued (the one reader waits on it); room holds
	// one while there may be room (writers of a full queue wait on it). A stale token only
	// costs its receiver a look.
	avail, room chan struct{}
}

func newQueue(max int) *queue {
	return &queue{max: max, avail: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push queues it unless the queue is full, and says whether it did.
func (q *queue) push(it item) bool {
	q.mu.Lock()
	n := len(q.items) - q.head
	if n >= q.max {
		q.mu.Unlock()
		return false
	}
	if q.head > 0 && len(q.items) == cap(q.items) {
		// Reuse the room taken items left at the front rather than grow.
		k := copy(q.items, q.items[q.head:])
		clear(q.items[k:])
		q.items, q.head = q.items[:k], 0
	}
	q.items = append(q.items, it)
	q.mu.Unlock()
	if n == 0 {
		signal(q.avail) // items queued before this one have a token already, or a look coming
	}
	return true
}

// wait queues it, waiting for room until done is closed or fires; it says whether it queued.
func (q *queue) wait(it item, done <-chan struct{}, timeout <-chan time.Time) bool {
	if q.push(it) {
		return true
	}
	for {
		select {
		case <-q.room:
		case <-done:
			return false
		case <-timeout:
			return false
		}
		if q.push(it) {
			// A batch taken may have made room for more than one: pass the token on to the
			// next writer waiting.
			signal(q.room)
			return true
		}
	}
}

// take moves up to n queued items to dst (the oldest first) and returns it.
func (q *queue) take(dst []item, n int) []item {
	q.mu.Lock()
	k := min(n, len(q.items)-q.head)
	dst = append(dst, q.items[q.head:q.head+k]...)
	q.dropTo(q.head + k)
	return dst
}

// dropTo lets the items before index i go, releases q.mu (held by the caller) and passes the
// tokens on: room to a writer, the rest to the reader.
func (q *queue) dropTo(i int) {
	k := i - q.head
	clear(q.items[q.head:i]) // the spans may go
	q.head = i
	left := len(q.items) - q.head
	if left == 0 {
		q.items, q.head = q.items[:0], 0
	}
	q.mu.Unlock()
	if k > 0 {
		signal(q.room)
	}
	if left > 0 {
		signal(q.avail)
	}
}

// takeSpans moves up to n queued span items to dst, the oldest first, in one go: the sender
// took a batch one item at a time, a lock and an unlock against the lock thread's pushes for
// each of up to maxCoalesce items. It stops at the first item that is not a span item (a
// message, or the end) and takes that one out too, as stop (ok false: none met).
func (q *queue) takeSpans(dst []item, n int) (out []item, stop item, ok bool) {
	q.mu.Lock()
	i, end := q.head, min(q.head+n, len(q.items))
	for i < end && q.items[i].op != opNone && !q.items[i].last {
		i++
	}
	dst = append(dst, q.items[q.head:i]...)
	if i < end { // stopped by an item that is not a span item
		stop, ok = q.items[i], true
		i++
	}
	q.dropTo(i)
	return dst, stop, ok
}

// len is how many items are queued.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}
