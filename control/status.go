package control

import (
	"fmt"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// live is what the status line shows: attempts waiting and holds held right now.
type live struct {
	waiting map[string]int64 // open attempt span id → start
	holding map[string]bool  // open hold span ids
	granted int
}

func (l *live) observe(s *tracefile.Span) {
	if l.waiting == nil {
		l.waiting, l.holding = map[string]int64{}, map[string]bool{}
	}
	switch s.Name {
	case semconv.SpanAcquire:
		if s.Open() {
			l.waiting[s.SpanID] = s.Start
		} else {
			delete(l.waiting, s.SpanID)
			if s.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted && s.Records <= 2 {
				l.granted++
			}
		}
	case semconv.SpanHold:
		if s.Open() {
			l.holding[s.SpanID] = true
		} else {
			delete(l.holding, s.SpanID)
		}
	}
}

func (r *run) printProgress() {
	longest := time.Duration(0)
	now := time.Now().UnixNano()
	for _, start := range r.live.waiting {
		if d := time.Duration(now - start); d > longest {
			longest = d
		}
	}
	fmt.Fprintf(r.opts.Progress, "\r\033[K%6.1fs  lockers %d  holding %d  waiting %d  longest wait %s",
		time.Since(r.start).Seconds(), r.res.Lockers, len(r.live.holding), len(r.live.waiting), longest.Round(time.Millisecond))
}
