package probe

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/wire"
)

// outbox is the only writer of the locker's socket. It numbers every message (the controller
// counts gaps) and holds messages back while a scheduled instant is near, so that reporting
// never steals the CPU from another locker that is about to fire.
type outbox struct {
	conn       *wire.Conn
	ch         chan item
	seq        atomic.Uint64
	quietUntil atomic.Int64 // unix ns, local clock
	log        *slog.Logger
	done       chan struct{}
	failed     atomic.Uint64
	hush       chan struct{} // wakes the sender to sleep through a quiet period
}

func newOutbox(conn *wire.Conn, log *slog.Logger) *outbox {
	o := &outbox{conn: conn, ch: make(chan item, 1<<16), log: log, done: make(chan struct{}), hush: make(chan struct{}, 1)}
	go o.run()
	return o
}

// item is a queued message, or a live span to be rendered as a partial record when it is sent:
// rendering (attribute conversion, allocation) then happens on the sender's goroutine after the
// firing instant, not on the lock thread just before the lock call.
type item struct {
	msg    *proto.Message
	span   sdktrace.ReadOnlySpan
	events []sdktrace.Event // nil: the span's attributes and events so far
}

func (it item) message() *proto.Message {
	if it.msg != nil {
		return it.msg
	}
	return partialRecord(it.span, it.events)
}

// put queues m, waiting for room until ctx ends.
func (o *outbox) put(ctx context.Context, m *proto.Message) error {
	select {
	case o.ch <- item{msg: m}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// putSpan queues a partial record of a live span (only the given events, or everything so far
// when events is nil), from a path that must not wait long.
func (o *outbox) putSpan(s sdktrace.ReadOnlySpan, events []sdktrace.Event) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case o.ch <- item{span: s, events: events}:
	case <-t.C:
		// The queue is bounded: a locker cut off from its controller for long drops what does
		// not fit, and the dropped record takes a sequence number, so that the controller
		// counts it lost.
		o.failed.Add(1)
		o.seq.Add(1)
	}
}

// quiet holds messages back until t (local clock) plus a margin for the other lockers.
func (o *outbox) quiet(t time.Time) {
	o.quietUntil.Store(t.Add(2 * time.Millisecond).UnixNano())
	select {
	case o.hush <- struct{}{}:
	default:
	}
}

// sleepQuiet sleeps through the quiet period, if one is ahead. A sender asleep on a timer is not
// woken by the span records queued at the instant (a sender parked on the channel would be,
// taking a core from a locker about to fire).
func (o *outbox) sleepQuiet() {
	if q := o.quietUntil.Load(); q != 0 {
		if d := time.Until(time.Unix(0, q)); d > 0 && d < time.Minute {
			time.Sleep(d)
		}
	}
}

func (o *outbox) run() {
	defer close(o.done)
	var next *proto.Message
	for {
		m := next
		next = nil
		if m == nil {
			var it item
			var ok bool
			select {
			case it, ok = <-o.ch:
			case <-o.hush:
				o.sleepQuiet()
				continue
			}
			if !ok {
				return
			}
			m = it.message()
		}
		o.sleepQuiet()
		if m.Kind == proto.KindSpans {
			next = o.coalesce(m)
		}
		m.Seq = o.seq.Add(1)
		if err := o.conn.Send(m); err != nil {
			o.failed.Add(1)
			o.log.Warn("send to controller failed", "kind", m.Kind, "err", err)
		}
	}
}

// maxCoalesce bounds the span records folded into one message.
const maxCoalesce = 512

// coalesce folds the span messages already queued behind m into m, so that a burst of partial
// records (every attempt and hold start is one) travels as one message with one resource instead
// of one message each. It returns the first queued message it could not fold, to be sent next.
// All of a locker's records share its one resource; spans are grouped under m's first scope.
func (o *outbox) coalesce(m *proto.Message) *proto.Message {
	rss := m.Spans.ResourceSpans
	if len(rss) == 0 || len(rss[0].ScopeSpans) == 0 {
		return nil
	}
	base := rss[0].ScopeSpans[0]
	for n := len(base.Spans); n < maxCoalesce; {
		select {
		case it, ok := <-o.ch:
			if !ok {
				return nil
			}
			more := it.message()
			if more.Kind != proto.KindSpans {
				return more
			}
			for _, rs := range more.Spans.ResourceSpans {
				for _, ss := range rs.ScopeSpans {
					if ss.GetScope().GetName() == base.GetScope().GetName() {
						base.Spans = append(base.Spans, ss.Spans...)
					} else {
						rss[0].ScopeSpans = append(rss[0].ScopeSpans, ss)
					}
					n += len(ss.Spans)
				}
			}
		default:
			return nil
		}
	}
	return nil
}

// drain closes the queue and waits until it is sent or ctx ends.
func (o *outbox) drain(ctx context.Context) {
	close(o.ch)
	select {
	case <-o.done:
	case <-ctx.Done():
	}
}
