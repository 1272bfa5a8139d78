package analysis

import (
	"sort"

	"github.com/lockprobe/lockprobe/lockmodel"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// The live controller asks Check every poll interval, for the whole run. Rebuilding the model
// of every span observed so far each time made a Check cost what the run's history costs (at
// 10^5 events, a third of a second, every 100 ms). What Check decides rests on the present: the
// attempts still waiting, the holds still held, the lockers, and what happened while the
// oldest waiter has waited (the conflicts and observations since, the holds that ended since,
// and each locker's last ended hold, the evidence of a stale owner). liveSet keeps that, as the
// spans are observed, and Check builds its model from it alone.

// liveSet is what Check needs of the observed spans.
type liveSet struct {
	open    map[spanKey]*tracefile.Span // attempts and holds not ended (marked markOpen)
	ended   []*tracefile.Span           // attempts, holds and getlks that ended, in the order they did (marked markEnded)
	last    map[int64]*tracefile.Span   // each locker's hold that ended last, kept past the horizon
	procs   map[spanKey]*tracefile.Span // the run, lockers, observers, snapshots, silences
	cursors map[spanKey]*observerCursor
	dirty   bool
	m       *model
}

func newLiveSet() liveSet {
	return liveSet{open: map[spanKey]*tracefile.Span{}, last: map[int64]*tracefile.Span{},
		procs: map[spanKey]*tracefile.Span{}, cursors: map[spanKey]*observerCursor{}}
}

// observe takes the span as it is now.
func (l *liveSet) observe(k spanKey, s *tracefile.Span) {
	l.dirty = true
	switch s.Name {
	case semconv.SpanAcquire, semconv.SpanHold, semconv.SpanGetlk:
		if s.Open() && s.Name != semconv.SpanGetlk {
			s.Marks |= markOpen
			l.open[k] = s
			return
		}
		if s.Marks&markOpen != 0 {
			s.Marks &^= markOpen
			delete(l.open, k)
		}
		if s.Marks&markEnded == 0 {
			s.Marks |= markEnded
			l.ended = append(l.ended, s)
		}
		if s.Name == semconv.SpanHold {
			id := attrInt(s, semconv.LockerID, -1)
			if p := l.last[id]; p == nil || p.End <= s.End {
				l.last[id] = s
			}
		}
	case semconv.SpanRun, semconv.SpanLocker, semconv.SpanObserver, semconv.SpanSnapshot, semconv.SpanSilence:
		l.procs[k] = s
	}
}

// model returns the model of the present at now: the spans the set holds, the ended ones since
// the horizon (the oldest open attempt's start, less the settle time), and the observers'
// answers since then with the last one before it of each query.
func (l *liveSet) model(now, settle int64) *model {
	if l.m != nil && !l.dirty {
		return l.m
	}
	horizon := now
	for _, s := range l.open {
		if s.Name == semconv.SpanAcquire && s.Start < horizon {
			horizon = s.Start
		}
	}
	horizon -= settle
	kept := l.ended[:0]
	for _, s := range l.ended {
		if s.End >= horizon {
			kept = append(kept, s)
		} else {
			s.Marks &^= markEnded
		}
	}
	clear(l.ended[len(kept):])
	l.ended = kept

	spans := make([]*tracefile.Span, 0, len(l.procs)+len(l.open)+len(l.ended)+len(l.last))
	for k, s := range l.procs {
		if s.Name == semconv.SpanObserver {
			s = l.observedSince(k, s, horizon)
		}
		spans = append(spans, s)
	}
	for _, s := range l.open {
		spans = append(spans, s)
	}
	spans = append(spans, l.ended...)
	for _, s := range l.last {
		if s.End < horizon {
			spans = append(spans, s)
		}
	}
	// The model's order is a trace's: by start, then span id.
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].Start != spans[j].Start {
			return spans[i].Start < spans[j].Start
		}
		return spans[i].SpanID < spans[j].SpanID
	})
	l.m = buildModel(spans, false)
	l.dirty = false
	return l.m
}

// observerCursor remembers how far into an observer span's events the horizon has moved, and
// the answers standing there: each Check moves it over the events that fell behind the horizon
// since the last one, never over the whole history again.
type observerCursor struct {
	pos      int
	standing map[string]tracefile.Event // query (mode, file) → its last answer before pos
	others   []tracefile.Event          // the events before pos that are no answer (clock, exit)
}

// observedSince returns the observer span with only its events from the horizon on, the answer
// of each query standing at the horizon, and its other events.
func (l *liveSet) observedSince(k spanKey, s *tracefile.Span, horizon int64) *tracefile.Span {
	c := l.cursors[k]
	if c == nil || c.pos > len(s.Events) {
		c = &observerCursor{standing: map[string]tracefile.Event{}}
		l.cursors[k] = c
	}
	evs := s.Events
	for c.pos < len(evs) && evs[c.pos].Time < horizon {
		e := evs[c.pos]
		if e.Name == semconv.EventObserved {
			c.standing[e.Attrs.Str(semconv.QueryMode)+"\x00"+e.Attrs.Str(semconv.FileLogical)] = e
		} else {
			c.others = append(c.others, e)
		}
		c.pos++
	}
	if c.pos == 0 {
		return s
	}
	keep := make([]tracefile.Event, 0, len(c.standing)+len(c.others)+len(evs)-c.pos)
	for _, e := range c.standing {
		keep = append(keep, e)
	}
	keep = append(keep, c.others...)
	keep = append(keep, evs[c.pos:]...)
	sort.SliceStable(keep, func(x, y int) bool { return keep[x].Time < keep[y].Time })
	cp := *s
	cp.Events = keep
	return &cp
}

// liveSettle is the settle time (Analyzer.settle) before a model exists: the option, else the
// root span's poll interval, else the default.
func (a *Analyzer) liveSettle() int64 {
	if a.opts.Settle > 0 {
		return int64(a.opts.Settle)
	}
	for _, s := range a.live.procs {
		if s.Name == semconv.SpanRun {
			if p := s.Attrs.IntOr(semconv.RunPoll, 0); p > 0 {
				return p
			}
		}
	}
	return int64(lockmodel.DefaultPoll)
}
