package probe

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/wire"
)

// outbox is the only writer of the locker's socket. It numbers every message (the controller
// counts gaps), says in each how many records still wait behind it (what a locker that dies
// leaves unsent), and keeps still only through a short window around each of its locker's
// scheduled instants, so that reporting never steals the CPU from a locker about to fire.
// Outside those windows a message leaves as soon as it is queued, span records within
// batchDelay: a record that waited for the next instant (perhaps minutes away) died with a
// killed locker, and the run said nothing.
type outbox struct {
	conn *wire.Conn
	q    *queue
	seq  atomic.Uint64
	// The quiet window, unix ns on the local clock: from quietLead before an instant to
	// quietTrail after it.
	quietFrom, quietUntil atomic.Int64
	log                   *slog.Logger
	done                  chan struct{}
	closed                atomic.Bool
	failed                atomic.Uint64
	hush                  chan struct{}           // a new window: the sender plans again
	trail                 atomic.Int64            // the window's length after an instant, ns (setTrail)
	instants              atomic.Pointer[[]int64] // the run's instants, local clock (setInstants)
	enc                   *encoder                // set before the first span item is queued
	buf                   []byte                  // the sender's: where each batch is rendered (encoder.requestIn)
}

// quietLead is how long before an instant the sender stops: enough for a burst it is sending
// to end before the lockers wake. quietTrail is how long after the instant it stays still at
// least, for the other lockers of that instant to make their calls; trailPerLocker is what each
// locker of this host adds per core (setTrail): a hundred lockers on two cores fire over a few
// milliseconds even at the floor, and senders that woke 2 ms after the instant took the cores
// from the lockers not yet fired (fire spread at 100 lockers: 16 ms, 5 ms with a longer trail).
const (
	quietLead      = 5 * time.Millisecond
	quietTrail     = 2 * time.Millisecond
	trailPerLocker = 500 * time.Microsecond
)

// setTrail sets how long after each instant the sender keeps still, for local lockers of this
// host (this one included) sharing cores.
func (o *outbox) setTrail(local, cores int) {
	o.trail.Store(int64(max(quietTrail, time.Duration(local)*trailPerLocker/time.Duration(max(cores, 1)))))
}

func newOutbox(conn *wire.Conn, log *slog.Logger) *outbox {
	o := &outbox{conn: conn, q: newQueue(maxQueued), log: log, done: make(chan struct{}), hush: make(chan struct{}, 1)}
	go o.run()
	return o
}

// item is a queued message, or an item of a span (its start, an event, its end) that the sender
// renders into OTLP with the rest of its batch, after the firing instant: the lock thread only
// queues it. last marks the end of the queue (drain).
type item struct {
	msg  *proto.Message
	span *span
	ev   *event // opEvent's (rare: a pointer keeps every other item at 32 bytes, not 80)
	op   opKind
	last bool
}

// errClosed is what put says after drain: the goodbye has gone, nothing follows it.
var errClosed = errors.New("outbox closed")

// put queues m, waiting for room until ctx ends.
func (o *outbox) put(ctx context.Context, m *proto.Message) error {
	if o.closed.Load() {
		o.failed.Add(1)
		return errClosed
	}
	if !o.q.wait(item{msg: m}, ctx.Done(), nil) {
		return ctx.Err()
	}
	return nil
}

// putOp queues a span item, from a path that must not wait long (the lock thread, a watcher).
func (o *outbox) putOp(it item) {
	if o.closed.Load() {
		o.failed.Add(1)
		return
	}
	if o.q.push(it) {
		return
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	if !o.q.wait(it, nil, t.C) {
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
	trail := time.Duration(o.trail.Load())
	if trail == 0 {
		trail = quietTrail
	}
	o.quietUntil.Store(t.Add(trail).UnixNano())
	select {
	case o.hush <- struct{}{}:
	default:
	}
}

// setInstants sets the run's instants (every locker's, local clock, in order): the sender
// keeps still around those too, the cores being shared with the lockers that fire then.
func (o *outbox) setInstants(ts []time.Time) {
	ns := make([]int64, len(ts))
	for i, t := range ts {
		ns[i] = t.UnixNano()
	}
	o.instants.Store(&ns)
	select {
	case o.hush <- struct{}{}:
	default:
	}
}

// window returns the first quiet window that has not ended at now (unix ns, local clock): the
// one around this locker's next instant (quiet) or around one of the run's.
func (o *outbox) window(now int64) (from, until int64, ok bool) {
	if from, until = o.quietFrom.Load(), o.quietUntil.Load(); until > now {
		ok = true
	}
	if p := o.instants.Load(); p != nil {
		trail := o.trail.Load()
		if trail == 0 {
			trail = int64(quietTrail)
		}
		ts := *p
		i, _ := slices.BinarySearch(ts, now-trail+1)
		if i < len(ts) && (!ok || ts[i]-int64(quietLead) < from) {
			from, until, ok = ts[i]-int64(quietLead), ts[i]+trail, true
		}
	}
	return from, until, ok
}

// sleepQuiet sleeps to the end of the window if now is inside it. A sender asleep on a timer is
// not woken by the records queued at the instant (a sender parked on the channel would be,
// taking a core from a locker about to fire).
func (o *outbox) sleepQuiet() {
	now := time.Now().UnixNano()
	if from, until, ok := o.window(now); ok && from <= now && now < until {
		time.Sleep(time.Duration(until - now))
	}
}

// untilQuiet is how long until the next window opens; 0 when none is ahead.
func (o *outbox) untilQuiet() time.Duration {
	now := time.Now().UnixNano()
	if from, _, ok := o.window(now); ok && from > now {
		return time.Duration(from - now)
	}
	return 0
}

// batchDelay is how long the sender lets span items gather after the first one before it takes
// them all as one batch: the rest of what the lock thread is doing (an attempt's end, the
// hold's start, the next cycle) joins the same message, under one resource, one record per
// span, and the sender wakes once per batch rather than once per item. Records still leave
// within milliseconds of their instant (a killed locker loses no more than that).
const batchDelay = 2 * time.Millisecond

func (o *outbox) run() {
	defer close(o.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var pending *item // a message met while gathering a batch: the next to send
	var batch []item
	for {
		var it item
		if pending != nil {
			it, pending = *pending, nil
		} else {
			var windowC <-chan time.Time
			if d := o.untilQuiet(); d > 0 {
				timer.Reset(d)
				windowC = timer.C
			}
			select {
			case <-o.q.avail:
				one := o.q.take(batch[:0], 1)
				if len(one) == 0 {
					continue // a stale token
				}
				it = one[0]
				clear(one)
			case <-o.hush:
				timer.Stop()
				continue
			case <-windowC:
				o.sleepQuiet()
				continue
			}
			timer.Stop()
		}
		if it.last {
			o.failed.Add(uint64(o.q.len())) // queued after the goodbye: never sent
			return
		}
		if it.op == opNone {
			o.sleepQuiet()
			o.send(it.msg, 0)
			continue
		}
		if o.untilQuiet() > batchDelay || o.untilQuiet() == 0 {
			time.Sleep(batchDelay)
		}
		o.sleepQuiet()
		batch = append(batch[:0], it)
		end := false
		var stop item
		var stopped bool
		batch, stop, stopped = o.q.takeSpans(batch, maxCoalesce-len(batch))
		if stopped {
			if stop.last {
				end = true
			} else {
				pending = &stop
			}
		}
		raw, grown, _ := o.enc.requestIn(o.buf, batch)
		o.buf = grown
		recycleEnded(batch)
		clear(batch) // the spans may go
		extra := uint32(0)
		if pending != nil {
			extra = 1
		}
		o.send(&proto.Message{Kind: proto.KindSpans, SpansRaw: raw}, extra)
		if end {
			o.failed.Add(uint64(o.q.len()))
			return
		}
	}
}

// send numbers m and sends it; its backlog is what is still queued, plus extra taken out of
// the queue but not sent yet.
func (o *outbox) send(m *proto.Message, extra uint32) {
	m.Seq = o.seq.Add(1)
	m.Backlog = uint32(min(o.q.len(), 1<<31)) + extra
	if err := o.conn.Send(m); err != nil {
		o.failed.Add(1)
		o.log.Warn("send to controller failed", "kind", m.Kind, "err", err)
	}
}

// maxCoalesce bounds the span items folded into one message.
const maxCoalesce = 4096

// maxQueued bounds the outbox: what a locker cut off from its controller keeps to send.
const maxQueued = 1 << 16

// drain ends the queue and waits until what was queued before is sent, or ctx ends. What is
// put afterwards (a span ended by a lock call that returned late) is dropped and counted: the
// goodbye, the last message, has gone.
func (o *outbox) drain(ctx context.Context) {
	if o.closed.Swap(true) {
		return
	}
	if !o.q.wait(item{last: true}, ctx.Done(), nil) {
		return
	}
	select {
	case <-o.done:
	case <-ctx.Done():
	}
}
