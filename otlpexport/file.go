package otlpexport

import (
	"context"
	"fmt"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// ExportFile uploads the spans of a saved trace file (any encoding tracefile reads) and returns
// what became of them. It waits for every upload, each bounded by opts.UploadTimeout, and stops
// early when ctx is done.
//
// The records of a span are merged by tracefile's one rule (Span.Merge); the spans go out as
// Complete makes them. An unfinished last request (a run that was killed) is logged and counted
// in Stats.SkippedLines, not an error; any other unreadable request is.
func ExportFile(ctx context.Context, path string, opts Options) (Stats, error) {
	opts = opts.withDefaults()
	tr, err := tracefile.Open(path)
	if err != nil {
		return Stats{}, fmt.Errorf("otlpexport: %w", err)
	}
	st := Stats{}
	if tr.Truncated {
		st.SkippedLines = 1
		opts.Logger.Warn("otlpexport: trace file ends with an unfinished request; it is skipped", "path", path)
	}
	spans := Complete(tr.Spans, opts.serviceName())
	if len(spans) == 0 {
		return st, nil
	}
	client, t, err := startClient(ctx, opts)
	if err != nil {
		return st, err
	}
	up := newUploader(client, t, opts)
	for len(spans) > 0 && ctx.Err() == nil {
		n := min(opts.BatchSpans, len(spans))
		rs, err := tracefile.ResourceSpans(spans[:n])
		if err != nil {
			return st, fmt.Errorf("otlpexport: %w", err)
		}
		up.upload(ctx, rs, n)
		spans = spans[n:]
	}
	st.Unsent = len(spans)
	ust := up.stats()
	st.Exported, st.Failed = ust.Exported, ust.Failed
	// Stop only closes connections now that nothing is in flight; it gets its own short deadline
	// so that a cancelled ctx still lets it finish.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	stopErr := client.Stop(stopCtx)
	return st, up.closeErr(st, ctx.Err(), stopErr)
}

// Complete makes merged spans ready for a collector, which stores every record as a span of its
// own and never hears of a span without an end: a span that only has partial records was still
// running when the file ended — a waiter that never returned is the interesting case — so it
// gets end = the latest instant in the trace, and a lock.acquire among them
// lock.outcome="blocked". service.name is set to service on every resource (unless service is
// ""). The spans are changed in place; resources, which spans share, are copied first.
func Complete(spans []*tracefile.Span, service string) []*tracefile.Span {
	var latest int64
	for _, s := range spans {
		latest = max(latest, s.Start, s.End)
		for _, e := range s.Events {
			latest = max(latest, e.Time)
		}
	}
	withService := map[*tracefile.Attr]tracefile.Attrs{}
	for _, s := range spans {
		if s.Open() {
			s.End = max(latest, s.Start, 1) // never 0: that would be open again
			if s.Name == semconv.SpanAcquire {
				s.Attrs.Set(semconv.LockOutcome, semconv.OutcomeBlocked.String())
			}
		}
		if service == "" {
			continue
		}
		var id *tracefile.Attr
		if len(s.Resource) > 0 {
			id = &s.Resource[0]
		}
		res, ok := withService[id]
		if !ok {
			res = append(tracefile.Attrs{}, s.Resource...)
			res.Set(semconv.ServiceName, service)
			withService[id] = res
		}
		s.Resource = res
	}
	return spans
}
