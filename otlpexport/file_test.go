package otlpexport

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// traceLine encodes one trace-file line.
func traceLine(t testing.TB, rs []*tracepb.ResourceSpans) string {
	t.Helper()
	b, err := tracefile.MarshalJSON(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rs})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func TestExportFile(t *testing.T) {
	var file strings.Builder
	// A hold that starts and ends, an attempt that is granted, and one
	// that never returns; plus a run span that also never ends.
	file.WriteString(traceLine(t, resourceSpans("", span(1, 1, "lockprobe.run", 100, 0))))
	started := span(1, 2, "lock.acquire", 110, 0)
	started.Attributes = []*commonpb.KeyValue{strAttr("lock.kind", "ofd"), strAttr(semconv.LockOutcome, "waiting")}
	started.Events = []*tracepb.Span_Event{{TimeUnixNano: 115, Name: "lock.conflict"}}
	file.WriteString(traceLine(t, resourceSpans("", started, span(1, 3, "lock.acquire", 120, 0))))
	ended := span(1, 2, "lock.acquire", 110, 130)
	ended.Attributes = []*commonpb.KeyValue{strAttr(semconv.LockOutcome, "granted")}
	ended.Events = []*tracepb.Span_Event{{TimeUnixNano: 115, Name: "lock.conflict"}, {TimeUnixNano: 112, Name: "lock.conflict"}}
	file.WriteString(traceLine(t, resourceSpans("", ended)))
	file.WriteString(traceLine(t, resourceSpans("", span(1, 4, "lock.hold", 130, 0))))
	file.WriteString("\n") // blank lines are harmless
	file.WriteString(traceLine(t, resourceSpans("", span(1, 4, "lock.hold", 130, 170))))
	// A partial record after the final one must not undo it.
	file.WriteString(traceLine(t, resourceSpans("", span(1, 4, "lock.hold", 130, 0))))
	// The run was killed while writing the last line.
	file.WriteString(`{"resourceSpans":[{"resource":{"attrib`)
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	if err := os.WriteFile(path, []byte(file.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			rc := &receiver{}
			ep := rc.start(t, proto)
			log, buf := testLogger()
			st, err := ExportFile(t.Context(), path, Options{Endpoint: ep, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			if want := (Stats{Exported: 4, SkippedLines: 1}); st != want {
				t.Errorf("stats = %+v, want %+v", st, want)
			}
			if !strings.Contains(buf.String(), "unfinished request") {
				t.Errorf("the unfinished line was not reported:\n%s", buf)
			}
			got := map[byte]*tracepb.Span{}
			for _, req := range rc.all() {
				for _, r := range req.GetResourceSpans() {
					if svc := attr(r.GetResource().GetAttributes(), semconv.ServiceName); svc != DefaultServiceName {
						t.Errorf("service.name = %q", svc)
					}
					for _, ss := range r.GetScopeSpans() {
						for _, s := range ss.GetSpans() {
							got[s.GetSpanId()[7]] = s
						}
					}
				}
			}
			tests := []struct {
				id      byte
				end     uint64
				outcome string
			}{
				{id: 1, end: 170},                     // never ended, not an attempt
				{id: 2, end: 130, outcome: "granted"}, // final record wins
				{id: 3, end: 170, outcome: "blocked"}, // waiter that never returned
				{id: 4, end: 170},                     // final not undone by a later partial
			}
			for _, tt := range tests {
				s := got[tt.id]
				if s == nil {
					t.Errorf("span %d not exported", tt.id)
					continue
				}
				if s.GetEndTimeUnixNano() != tt.end || attr(s.GetAttributes(), semconv.LockOutcome) != tt.outcome {
					t.Errorf("span %d (%s): end %d outcome %q, want end %d outcome %q", tt.id, s.GetName(),
						s.GetEndTimeUnixNano(), attr(s.GetAttributes(), semconv.LockOutcome), tt.end, tt.outcome)
				}
			}
			// The attempt's partial record lent its kind and event.
			if s := got[2]; s != nil {
				if attr(s.GetAttributes(), "lock.kind") != "ofd" || len(s.GetEvents()) != 2 ||
					s.GetEvents()[0].GetTimeUnixNano() != 112 {
					t.Errorf("merged attempt: attributes %v, events %v", s.GetAttributes(), s.GetEvents())
				}
			}
		})
	}
}

func TestExportFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	content := "{not json}\n" + traceLine(t, resourceSpans("", span(1, 1, "x", 1, 2)))
	if err := os.WriteFile(bad, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{name: "missing", path: filepath.Join(dir, "nope.jsonl"), want: "open trace"},
		{name: "broken middle line", path: bad, want: "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ExportFile(t.Context(), tt.path, Options{Endpoint: closedEndpoint(t, ProtocolHTTPProtobuf)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// FuzzExportSpans: whatever the trace reader accepts, Complete and the OTLP rendering take.
func FuzzExportSpans(f *testing.F) {
	f.Add([]byte(traceLine(f, resourceSpans("", span(1, 1, "lock.acquire", 1, 0)))))
	f.Add([]byte(traceLine(f, resourceSpans("svc", span(1, 2, "lock.hold", 1, 2))) + `{"resourceSpans":[`))
	f.Add([]byte("\n\n{}\n"))
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := tracefile.Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		spans := Complete(tr.Spans, "svc")
		rs, err := tracefile.ResourceSpans(spans)
		if err != nil {
			t.Fatalf("read spans do not render: %v", err)
		}
		if countSpans(rs) != len(spans) {
			t.Fatalf("%d spans rendered, want %d", countSpans(rs), len(spans))
		}
		for _, s := range spans {
			if s.Open() {
				t.Fatalf("span %s still open after Complete", s.SpanID)
			}
		}
	})
}
