package probe

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/wire"
)

// outbox is the only writer of the locker's socket. It numbers every message (the controller
// counts gaps) and holds messages back while a scheduled instant is near, so that reporting
// never steals the CPU from another locker that is about to fire.
type outbox struct {
	conn       *wire.Conn
	ch         chan *proto.Message
	seq        atomic.Uint64
	quietUntil atomic.Int64 // unix ns, local clock
	log        *slog.Logger
	done       chan struct{}
	failed     atomic.Uint64
}

func newOutbox(conn *wire.Conn, log *slog.Logger) *outbox {
	o := &outbox{conn: conn, ch: make(chan *proto.Message, 1<<16), log: log, done: make(chan struct{})}
	go o.run()
	return o
}

// put queues m, waiting for room until ctx ends.
func (o *outbox) put(ctx context.Context, m *proto.Message) error {
	select {
	case o.ch <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// putLater queues m from a path that must not wait long (a span start on the executor thread).
func (o *outbox) putLater(m *proto.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.put(ctx, m); err != nil {
		o.failed.Add(1)
	}
}

// quiet holds messages back until t (local clock) plus a margin for the other lockers.
func (o *outbox) quiet(t time.Time) {
	o.quietUntil.Store(t.Add(2 * time.Millisecond).UnixNano())
}

func (o *outbox) run() {
	defer close(o.done)
	for m := range o.ch {
		if q := o.quietUntil.Load(); q != 0 {
			if d := time.Until(time.Unix(0, q)); d > 0 && d < time.Minute {
				time.Sleep(d)
			}
		}
		m.Seq = o.seq.Add(1)
		if err := o.conn.Send(m); err != nil {
			o.failed.Add(1)
			o.log.Warn("send to controller failed", "kind", m.Kind, "err", err)
		}
	}
}

// lastSeq is the sequence number of the last message sent.
func (o *outbox) lastSeq() uint64 { return o.seq.Load() }

// drain closes the queue and waits until it is sent or ctx ends.
func (o *outbox) drain(ctx context.Context) {
	close(o.ch)
	select {
	case <-o.done:
	case <-ctx.Done():
	}
}
