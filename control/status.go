package control

import (
	"time"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// live is what the status line shows: attempts waiting and holds held right now, by merged span
// (the merger gives every record of a span the same one: no ids to hash per record).
type live struct {
	waiting map[*tracefile.Span]waiter // open attempt → who, since when
	holding map[*tracefile.Span]bool   // open holds
}

type waiter struct {
	start  int64
	locker int64
}

func (l *live) observe(s *tracefile.Span) {
	if l.waiting == nil {
		l.waiting, l.holding = map[*tracefile.Span]waiter{}, map[*tracefile.Span]bool{}
	}
	switch s.Name {
	case semconv.SpanAcquire:
		if s.Open() {
			l.waiting[s] = waiter{start: s.Start, locker: s.Attrs.IntOr(semconv.LockerID, -1)}
		} else {
			delete(l.waiting, s)
		}
	case semconv.SpanHold:
		if s.Open() {
			l.holding[s] = true
		} else {
			delete(l.holding, s)
		}
	}
}

// Status is the live state of a run, for a status line.
type Status struct {
	Elapsed       time.Duration
	Lockers       int
	Holding       int
	Waiting       int
	LongestWait   time.Duration
	LongestWaiter int64 // locker id of the longest waiter
}

func (r *run) status() Status {
	st := Status{Elapsed: time.Since(r.start), Lockers: len(r.opts.Queues), Holding: len(r.live.holding), Waiting: len(r.live.waiting)}
	now := time.Now().UnixNano()
	for _, w := range r.live.waiting {
		if d := time.Duration(now - w.start); d > st.LongestWait {
			st.LongestWait, st.LongestWaiter = d, w.locker
		}
	}
	return st
}
