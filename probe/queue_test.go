package probe

import (
	"testing"
	"time"
)

// TestQueueOrderAndBound: items leave in the order they came, at most max are held, and a
// full queue refuses until something is taken.
func TestQueueOrderAndBound(t *testing.T) {
	q := newQueue(3)
	for i := range 3 {
		if !q.push(item{ev: &event{t: int64(i)}}) {
			t.Fatalf("push %d refused below the bound", i)
		}
	}
	if q.push(item{ev: &event{t: 3}}) {
		t.Fatal("a full queue took a fourth item")
	}
	got := q.take(nil, 2)
	if len(got) != 2 || got[0].ev.t != 0 || got[1].ev.t != 1 {
		t.Fatalf("take 2 = %v, want items 0 and 1", got)
	}
	for i := 3; i < 5; i++ {
		if !q.push(item{ev: &event{t: int64(i)}}) {
			t.Fatalf("push %d refused with room", i)
		}
	}
	got = q.take(nil, 10)
	var ts []int64
	for _, it := range got {
		ts = append(ts, it.ev.t)
	}
	if len(ts) != 3 || ts[0] != 2 || ts[1] != 3 || ts[2] != 4 {
		t.Fatalf("take all = %v, want [2 3 4]", ts)
	}
	if q.len() != 0 {
		t.Fatalf("len %d after taking everything", q.len())
	}
}

// TestQueueTakesMemoryAsItComes: a new queue holds no buffer (a channel of the same bound
// allocated 5 MiB per locker up front).
func TestQueueTakesMemoryAsItComes(t *testing.T) {
	q := newQueue(maxQueued)
	if cap(q.items) != 0 {
		t.Fatalf("a new queue holds room for %d items", cap(q.items))
	}
	q.push(item{})
	if cap(q.items) > 64 {
		t.Fatalf("one item took room for %d", cap(q.items))
	}
}

// TestQueueWakesEveryWaitingWriter: a batch taken from a full queue makes room for several
// writers waiting; each gets in, none waits for its timeout.
func TestQueueWakesEveryWaitingWriter(t *testing.T) {
	q := newQueue(4)
	for range 4 {
		q.push(item{})
	}
	const writers = 3
	done := make(chan bool, writers)
	for range writers {
		go func() { done <- q.wait(item{}, nil, time.After(10*time.Second)) }()
	}
	time.Sleep(50 * time.Millisecond) // let them find the queue full
	q.take(nil, 4)
	for range writers {
		select {
		case ok := <-done:
			if !ok {
				t.Fatal("a waiting writer gave up")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiting writer was not woken by the room a taken batch made")
		}
	}
	if q.len() != writers {
		t.Fatalf("len %d, want %d", q.len(), writers)
	}
}

// TestQueueAvailSignalsEveryItem: the reader's token is there whenever items are queued, also
// after it took only some of them.
func TestQueueAvailSignalsEveryItem(t *testing.T) {
	q := newQueue(8)
	q.push(item{})
	q.push(item{})
	for i := range 2 {
		select {
		case <-q.avail:
		case <-time.After(time.Second):
			t.Fatalf("no token with %d items queued", q.len())
		}
		if got := q.take(nil, 1); len(got) != 1 {
			t.Fatalf("take %d: nothing though the token was there", i)
		}
	}
}

// TestQueueTakeSpans: a batch takes the span items queued, in order, up to its bound, and stops
// at the first message (or the end), which it takes out as the one to handle next; the rest
// stays queued.
func TestQueueTakeSpans(t *testing.T) {
	q := newQueue(100)
	op := func(n int64) item { return item{op: opEvent, ev: &event{t: n}} }
	for _, it := range []item{op(0), op(1), {msg: ping(7)}, op(2), {last: true}, op(3)} {
		q.push(it)
	}
	got, stop, ok := q.takeSpans(nil, 10)
	if len(got) != 2 || got[0].ev.t != 0 || got[1].ev.t != 1 || !ok || stop.msg == nil || stop.msg.Ping.T1 != 7 {
		t.Fatalf("first batch %v, stop %+v %v: want items 0 and 1, then the message", got, stop, ok)
	}
	got, stop, ok = q.takeSpans(nil, 10)
	if len(got) != 1 || got[0].ev.t != 2 || !ok || !stop.last {
		t.Fatalf("second batch %v, stop %+v %v: want item 2, then the end", got, stop, ok)
	}
	got, _, ok = q.takeSpans(nil, 10)
	if len(got) != 1 || got[0].ev.t != 3 || ok || q.len() != 0 {
		t.Fatalf("third batch %v (stop %v), %d left: want item 3, no stop, nothing left", got, ok, q.len())
	}
	for i := range 5 {
		q.push(op(int64(i)))
	}
	q.push(item{msg: ping(8)})
	if got, _, ok = q.takeSpans(nil, 3); len(got) != 3 || ok || q.len() != 3 {
		t.Fatalf("bounded batch %v (stop %v), %d left: want 3 items, no stop, 3 left", got, ok, q.len())
	}
}
