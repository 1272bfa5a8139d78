package probe

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/wire"
)

// outbox is the only writer of the locker's socket. It numbers every message (the controller
// counts gaps), says in each how many records still wait behind it (what a locker that dies
// leaves unsent), and keeps still only through a short window around each of its locker's
// scheduled instants, so that reporting never steals the CPU from a locker about to fire.
// Outside those windows a record leaves as soon as it is queued: a record that waited for the
// next instant (perhaps minutes away) died with a killed locker, and the run said nothing.
type outbox struct {
	conn *wire.Conn
	ch   chan item
	seq  atomic.Uint64
	// The quiet window, unix ns on the local clock: from quietLead before an instant to
	// quietTrail after it.
	quietFrom, quietUntil atomic.Int64
	log                   *slog.Logger
	done                  chan struct{}
	closed                atomic.Bool
	failed                atomic.Uint64
	hush                  chan struct{} // a new window: the sender plans again
}

// quietLead is how long before an instant the sender stops: enough for a burst it is sending
// to end before the lockers wake. quietTrail is how long after the instant it stays still, for
// the other lockers of that instant to make their calls.
const (
	quietLead  = 5 * time.Millisecond
	quietTrail = 2 * time.Millisecond
)

func newOutbox(conn *wire.Conn, log *slog.Logger) *outbox {
	o := &outbox{conn: conn, ch: make(chan item, 1<<16), log: log, done: make(chan struct{}), hush: make(chan struct{}, 1)}
	go o.run()
	return o
}

// item is a queued message, or a live span to be rendered as a partial record when it is sent:
// rendering (attribute conversion, allocation) then happens on the sender's goroutine after the
// firing instant, not on the lock thread just before the lock call. last marks the end of the
// queue (drain).
type item struct {
	msg    *proto.Message
	span   sdktrace.ReadOnlySpan
	events []sdktrace.Event // nil: the span's attributes and events so far
	last   bool
}

func (it item) message() *proto.Message {
	if it.msg != nil {
		return it.msg
	}
	return partialRecord(it.span, it.events)
}

// errClosed is what put says after drain: the goodbye has gone, nothing follows it.
var errClosed = errors.New("outbox closed")

// put queues m, waiting for room until ctx ends.
func (o *outbox) put(ctx context.Context, m *proto.Message) error {
	if o.closed.Load() {
		o.failed.Add(1)
		return errClosed
	}
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
	if o.closed.Load() {
		o.failed.Add(1)
		return
	}
	select {
	case o.ch <- item{span: s, events: events}:
		return
	default:
	}
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

// quiet sets the window around the instant t (local clock).
func (o *outbox) quiet(t time.Time) {
	o.quietFrom.Store(t.Add(-quietLead).UnixNano())
	o.quietUntil.Store(t.Add(quietTrail).UnixNano())
	select {
	case o.hush <- struct{}{}:
	default:
	}
}

// sleepQuiet sleeps to the end of the window if now is inside it. A sender asleep on a timer is
// not woken by the records queued at the instant (a sender parked on the channel would be,
// taking a core from a locker about to fire).
func (o *outbox) sleepQuiet() {
	now := time.Now().UnixNano()
	if from, until := o.quietFrom.Load(), o.quietUntil.Load(); from <= now && now < until {
		time.Sleep(time.Duration(until - now))
	}
}

// untilQuiet is how long until the next window opens; 0 when none is ahead.
func (o *outbox) untilQuiet() time.Duration {
	if d := time.Duration(o.quietFrom.Load() - time.Now().UnixNano()); d > 0 {
		return d
	}
	return 0
}

func (o *outbox) run() {
	defer close(o.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var next *proto.Message
	for {
		m := next
		next = nil
		if m == nil {
			var windowC <-chan time.Time
			if d := o.untilQuiet(); d > 0 {
				timer.Reset(d)
				windowC = timer.C
			}
			var it item
			select {
			case it = <-o.ch:
			case <-o.hush:
				timer.Stop()
				continue
			case <-windowC:
				o.sleepQuiet()
				continue
			}
			timer.Stop()
			if it.last {
				o.failed.Add(uint64(len(o.ch))) // queued after the goodbye: never sent
				return
			}
			m = it.message()
		}
		o.sleepQuiet()
		if m.Kind == proto.KindSpans {
			next = o.coalesce(m)
		}
		m.Seq = o.seq.Add(1)
		m.Backlog = uint32(min(len(o.ch), 1<<31))
		if next != nil && next != endOfQueue {
			m.Backlog++
		}
		if err := o.conn.Send(m); err != nil {
			o.failed.Add(1)
			o.log.Warn("send to controller failed", "kind", m.Kind, "err", err)
		}
		if next == endOfQueue {
			o.failed.Add(uint64(len(o.ch)))
			return
		}
	}
}

// maxCoalesce bounds the span records folded into one message.
const maxCoalesce = 512

// endOfQueue stands for the queue's last item when coalesce meets it.
var endOfQueue = &proto.Message{}

// coalesce folds the span messages already queued behind m into m, so that a burst of partial
// records (every attempt and hold start is one) travels as one message with one resource instead
// of one message each. It returns the first queued message it could not fold, to be sent next
// (endOfQueue when that was the end of the queue). All of a locker's records share its one
// resource; spans are grouped under m's first scope.
func (o *outbox) coalesce(m *proto.Message) *proto.Message {
	rss := m.Spans.ResourceSpans
	if len(rss) == 0 || len(rss[0].ScopeSpans) == 0 {
		return nil
	}
	base := rss[0].ScopeSpans[0]
	for n := len(base.Spans); n < maxCoalesce; {
		select {
		case it := <-o.ch:
			if it.last {
				return endOfQueue
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

// drain ends the queue and waits until what was queued before is sent, or ctx ends. What is
// put afterwards (a span ended by a lock call that returned late) is dropped and counted: the
// goodbye, the last message, has gone.
func (o *outbox) drain(ctx context.Context) {
	if o.closed.Swap(true) {
		return
	}
	select {
	case o.ch <- item{last: true}:
	case <-ctx.Done():
		return
	}
	select {
	case <-o.done:
	case <-ctx.Done():
	}
}
