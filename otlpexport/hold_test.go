package otlpexport

import (
	"context"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/semconv"
)

// TestForwarderHold checks that the final records of held spans wait for
// Close and take in the records that come after them (the verdict on the
// root, a locker.exit event on a locker), while other spans go out as they
// come; each span reaches the collector once.
func TestForwarderHold(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			rc := &receiver{}
			f, err := New(t.Context(), Options{Endpoint: rc.start(t, proto),
				Hold: []string{semconv.SpanRun, semconv.SpanLocker}, BatchDelay: 1})
			if err != nil {
				t.Fatal(err)
			}
			root := span(1, 1, semconv.SpanRun, 10, 0)
			root.Attributes = []*commonpb.KeyValue{strAttr("lockprobe.scenario", "contend")}
			f.Enqueue(resourceSpans("", root))
			f.Enqueue(resourceSpans("", span(1, 1, semconv.SpanRun, 10, 90)))
			f.Enqueue(resourceSpans("", span(1, 2, semconv.SpanLocker, 11, 80)))
			f.Enqueue(resourceSpans("", span(1, 3, "lock.acquire", 12, 20)))
			// After the finals: an exit event (partial) and the verdict (final).
			exit := span(1, 2, semconv.SpanLocker, 0, 0)
			exit.Events = []*tracepb.Span_Event{{TimeUnixNano: 85, Name: semconv.EventExit}}
			f.Enqueue(resourceSpans("", exit))
			verdict := span(1, 1, semconv.SpanRun, 10, 90)
			verdict.Attributes = []*commonpb.KeyValue{strAttr(semconv.Verdict, "healthy")}
			verdict.Events = []*tracepb.Span_Event{{TimeUnixNano: 90, Name: semconv.EventVerdict}}
			f.Enqueue([]*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{verdict}}}}})

			// The attempt is not held: it arrives before Close.
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			for len(rc.spans()) == 0 && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			if got := rc.spans(); len(got) != 1 || got["lock.acquire"] == "" {
				t.Fatalf("before Close the collector has %v, want only lock.acquire", got)
			}
			st, err := f.Close(t.Context())
			if err != nil || st.Exported != 3 {
				t.Fatalf("Close = %+v, %v; want 3 exported", st, err)
			}
			byName := map[string][]*tracepb.Span{}
			var rootRes []*commonpb.KeyValue
			for _, req := range rc.all() {
				for _, rs := range req.GetResourceSpans() {
					for _, ss := range rs.GetScopeSpans() {
						for _, s := range ss.GetSpans() {
							byName[s.GetName()] = append(byName[s.GetName()], s)
							if s.GetName() == semconv.SpanRun {
								rootRes = rs.GetResource().GetAttributes()
							}
						}
					}
				}
			}
			if len(byName[semconv.SpanRun]) != 1 || len(byName[semconv.SpanLocker]) != 1 {
				t.Fatalf("received %v, want the root and the locker once each", byName)
			}
			r := byName[semconv.SpanRun][0]
			if attr(r.GetAttributes(), semconv.Verdict) != "healthy" || attr(r.GetAttributes(), "lockprobe.scenario") != "contend" ||
				len(r.GetEvents()) != 1 || r.GetEndTimeUnixNano() != 90 {
				t.Errorf("root = %v, want the verdict, the partial's attribute, one event, end 90", r)
			}
			if attr(rootRes, "host.name") != "node1" || attr(rootRes, semconv.ServiceName) != "lockprobe" {
				t.Errorf("root resource %v, want the final record's, with service.name", rootRes)
			}
			if l := byName[semconv.SpanLocker][0]; len(l.GetEvents()) != 1 || l.GetEndTimeUnixNano() != 80 || l.GetStartTimeUnixNano() != 11 {
				t.Errorf("locker = %v, want the exit event, start 11, end 80", l)
			}
		})
	}
}
