package tracefile

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

const (
	testTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpan   = "00f067aa0ba902b7"
	testParent = "53995c3f42cd8ad8"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func strKV(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intKV(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// rec is one span record, to be wrapped by reqOf.
type rec struct {
	span, parent string
	name         string
	start, end   uint64
	attrs        []*commonpb.KeyValue
	events       []*tracepb.Span_Event
}

func (r rec) span_(t testing.TB) *tracepb.Span {
	s := &tracepb.Span{TraceId: unhex(t, testTrace), SpanId: unhex(t, r.span), Name: r.name,
		StartTimeUnixNano: r.start, EndTimeUnixNano: r.end, Attributes: r.attrs, Events: r.events}
	if r.parent != "" {
		s.ParentSpanId = unhex(t, r.parent)
	}
	return s
}

func resourceSpans(t testing.TB, recs ...rec) *tracepb.ResourceSpans {
	spans := make([]*tracepb.Span, 0, len(recs))
	for _, r := range recs {
		spans = append(spans, r.span_(t))
	}
	return &tracepb.ResourceSpans{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strKV("service.name", "lockprobe"), intKV("locker.id", 1)}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "lockprobe"}, Spans: spans}},
	}
}

func reqOf(t testing.TB, recs ...rec) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{resourceSpans(t, recs...)}}
}

func event(name string, at uint64, attrs ...*commonpb.KeyValue) *tracepb.Span_Event {
	return &tracepb.Span_Event{Name: name, TimeUnixNano: at, Attributes: attrs}
}

// jsonLine renders a request as one OTLP JSON line.
func jsonLine(t testing.TB, req *coltracepb.ExportTraceServiceRequest) []byte {
	t.Helper()
	line, err := MarshalJSON(req)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// traceText joins JSON lines of records, each line ending in a newline (an older run's
// trace.jsonl).
func traceText(t testing.TB, lines ...[]rec) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(jsonLine(t, reqOf(t, l...)))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// traceFile writes one request per group of records with Writer and returns the file's bytes,
// and the file's size after each request (what a crash at that moment would leave).
func traceFile(t testing.TB, lines ...[]rec) (data []byte, sizes []int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if err := w.Write(reqOf(t, l...)); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, st.Size())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, sizes
}

// encodings are the two ways a trace reaches Read: lockprobe's file and OTLP JSON lines.
var encodings = []struct {
	name string
	of   func(t testing.TB, lines ...[]rec) []byte
}{
	{"pb.zst", func(t testing.TB, lines ...[]rec) []byte { d, _ := traceFile(t, lines...); return d }},
	{"jsonl", traceText},
}
