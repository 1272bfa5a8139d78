package probe

import (
	"context"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/wire"
)

// outboxPair is an outbox over a real DEALER and the ROUTER it sends to.
func outboxPair(t *testing.T) (*outbox, *wire.Conn) {
	t.Helper()
	r, err := wire.Listen(t.Context(), wire.ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	d, err := wire.Dial(t.Context(), r.LocalEndpoint(), "outbox-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return newOutbox(d, quietLog), r
}

func ping(n int64) *proto.Message {
	return &proto.Message{Kind: proto.KindPing, Ping: &proto.Ping{T1: n}}
}

func receive(t *testing.T, r *wire.Conn, within time.Duration) (wire.Incoming, bool) {
	t.Helper()
	select {
	case in := <-r.In():
		if in.Err != nil {
			t.Fatal(in.Err)
		}
		return in, true
	case <-time.After(within):
		return wire.Incoming{}, false
	}
}

// TestOutboxSendsBeforeAFarInstant: the quiet window belongs around the next instant, not
// between now and it. A record queued while the next instant is a minute away leaves at once;
// it used to wait for that instant, and died with a locker killed meanwhile.
func TestOutboxSendsBeforeAFarInstant(t *testing.T) {
	o, r := outboxPair(t)
	o.quiet(time.Now().Add(time.Minute))
	if err := o.put(t.Context(), ping(1)); err != nil {
		t.Fatal(err)
	}
	if _, ok := receive(t, r, 5*time.Second); !ok {
		t.Fatal("a record queued a minute before the next instant was not sent within 5s")
	}
}

// TestOutboxQuietAroundTheInstant: what is queued inside the window waits for its end (the
// other lockers of that instant make their calls first), then leaves in order, each message
// saying how many more are queued behind it.
func TestOutboxQuietAroundTheInstant(t *testing.T) {
	o, r := outboxPair(t)
	instant := time.Now().Add(100 * time.Millisecond)
	o.quiet(instant)
	time.Sleep(time.Until(instant.Add(-time.Millisecond)))
	for i := range 3 {
		if err := o.put(t.Context(), ping(int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		in, ok := receive(t, r, 5*time.Second)
		if !ok {
			t.Fatalf("message %d not received", i)
		}
		if in.At.Before(instant.Add(quietTrail)) {
			t.Errorf("message %d arrived %v before the window's end", i, instant.Add(quietTrail).Sub(in.At))
		}
		if in.Msg.Ping.T1 != int64(i) || in.Msg.Seq != uint64(i+1) || in.Msg.Backlog != uint32(2-i) {
			t.Errorf("message %d: ping %d seq %d backlog %d; want ping %d seq %d backlog %d", i, in.Msg.Ping.T1, in.Msg.Seq, in.Msg.Backlog, i, i+1, 2-i)
		}
	}
}

// TestOutboxAfterDrain: a span ended by a lock call that returns after the goodbye used to
// panic the locker ("send on closed channel"); now it is dropped and counted.
func TestOutboxAfterDrain(t *testing.T) {
	o, r := outboxPair(t)
	if err := o.put(t.Context(), ping(1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	o.drain(ctx)
	if _, ok := receive(t, r, 5*time.Second); !ok {
		t.Fatal("what was queued before drain was not sent")
	}
	if err := o.put(t.Context(), ping(2)); err != errClosed {
		t.Errorf("put after drain: %v, want errClosed", err)
	}
	o.putOp(item{op: opStart, span: &span{}})
	o.drain(ctx) // twice: nothing happens
	if n := o.failed.Load(); n != 2 {
		t.Errorf("failed = %d, want 2 (the put and the span after drain)", n)
	}
}

// TestOutboxQuietAroundTheRunsInstants: the sender keeps still around the run's instants, other
// lockers' included, not only around its own.
func TestOutboxQuietAroundTheRunsInstants(t *testing.T) {
	o, r := outboxPair(t)
	instant := time.Now().Add(100 * time.Millisecond)
	o.setInstants([]time.Time{instant.Add(-time.Hour), instant})
	time.Sleep(time.Until(instant.Add(-time.Millisecond)))
	if err := o.put(t.Context(), ping(1)); err != nil {
		t.Fatal(err)
	}
	in, ok := receive(t, r, 5*time.Second)
	if !ok {
		t.Fatal("not received")
	}
	if in.At.Before(instant.Add(quietTrail)) {
		t.Errorf("a message queued in another locker's window arrived %v before its end", instant.Add(quietTrail).Sub(in.At))
	}
}
