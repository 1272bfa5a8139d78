package tracefile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	pb "google.golang.org/protobuf/proto"
)

func fullRecord() rec {
	return rec{span: testSpan, parent: testParent, name: "lock.acquire", start: 1_700_000_000_000_000_000, end: 1_700_000_000_500_000_000,
		attrs: []*commonpb.KeyValue{strKV("lock.outcome", "granted"), intKV("lock.start", 10),
			{Key: "lock.ratio", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}}},
			{Key: "lock.held", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}},
			{Key: "lock.raw", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0xca, 0xfe}}}},
			{Key: "proc.stack", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
				Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_StringValue{StringValue: "a"}}, {Value: &commonpb.AnyValue_StringValue{StringValue: "b"}}}}}}},
			{Key: "lock.map", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{
				Values: []*commonpb.KeyValue{intKV("n", 1)}}}}},
			// An attribute named like an id key: it must pass through untouched (and not hang the rewrite).
			strKV("spanId", "traceId"), strKV("note", `say "spanId": "x"`)},
		events: []*tracepb.Span_Event{event("lock.conflict", 1_700_000_000_100_000_000, intKV("proc.lock.pid", 77))}}
}

func TestMarshalLineRoundTrip(t *testing.T) {
	req := reqOf(t, fullRecord(), rec{span: "1111111111111111", name: "lockprobe.run", start: 5})
	line := mustLine(t, req)
	if strings.ContainsAny(string(line), "\n\r") {
		t.Fatalf("line holds a line break: %s", line)
	}
	got, err := UnmarshalLine(line)
	if err != nil {
		t.Fatalf("UnmarshalLine: %v\n%s", err, line)
	}
	if !pb.Equal(got, req) {
		t.Errorf("round trip changed the request:\n got %v\nwant %v", got, req)
	}
}

// The OTLP JSON encoding differs from protojson's defaults: ids are hex, not base64.
func TestMarshalLineIsOTLPJSON(t *testing.T) {
	line := mustLine(t, reqOf(t, fullRecord()))
	var doc struct {
		ResourceSpans []struct {
			ScopeSpans []struct {
				Spans []map[string]any `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if err := json.Unmarshal(line, &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	if len(doc.ResourceSpans) != 1 || len(doc.ResourceSpans[0].ScopeSpans) != 1 || len(doc.ResourceSpans[0].ScopeSpans[0].Spans) != 1 {
		t.Fatalf("resourceSpans/scopeSpans/spans not found under lowerCamelCase keys:\n%s", line)
	}
	span := doc.ResourceSpans[0].ScopeSpans[0].Spans[0]
	for key, want := range map[string]string{"traceId": testTrace, "spanId": testSpan, "parentSpanId": testParent} {
		if got, _ := span[key].(string); got != want {
			t.Errorf("%s = %q, want hex %q", key, span[key], want)
		}
	}
	for _, key := range []string{"startTimeUnixNano", "endTimeUnixNano", "attributes", "events"} {
		if _, ok := span[key]; !ok {
			t.Errorf("span has no %q key", key)
		}
	}
	if ok, _ := regexp.Match(`"(trace_id|span_id|parent_span_id|start_time_unix_nano|resource_spans)"`, line); ok {
		t.Errorf("snake_case key in %s", line)
	}
	if ok, _ := regexp.Match(`"traceId":\s*"[0-9a-f]{32}"`, line); !ok {
		t.Errorf("no 32-char hex traceId in %s", line)
	}
	if ok, _ := regexp.Match(`"spanId":\s*"[0-9a-f]{16}"`, line); !ok {
		t.Errorf("no 16-char hex spanId in %s", line)
	}
}

func TestUnmarshalLineErrors(t *testing.T) {
	for _, tc := range []struct{ name, line, want string }{
		{"not json", `hello`, "parse spans"},
		{"cut short", `{"resourceSpans":[{"scopeSpans":[`, "parse spans"},
		{"bad hex id", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"xyz"}]}]}]}`, "parse spans: id"},
		{"wrong type", `{"resourceSpans":{}}`, "parse spans"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnmarshalLine([]byte(tc.line))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Unknown fields are skipped: a newer exporter's additions must not break reading.
	if _, err := UnmarshalLine([]byte(`{"resourceSpans":[],"futureField":1}`)); err != nil {
		t.Errorf("unknown field: %v", err)
	}
}

func TestCreateAppendWriteSpans(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(reqOf(t, rec{span: testSpan, name: "lock.acquire", start: 10, attrs: []*commonpb.KeyValue{strKV("lock.outcome", "waiting")}})); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteSpans(resourceSpans(t, rec{span: "2222222222222222", name: "lock.hold", start: 20})); err != nil {
		t.Fatal(err)
	}
	if w.Lines() != 2 {
		t.Errorf("Lines() = %d, want 2", w.Lines())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Write(reqOf(t, rec{span: testSpan})); err == nil {
		t.Error("Write after Close succeeded")
	}

	a, err := Append(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WriteSpans(resourceSpans(t, rec{span: testSpan, name: "lock.acquire", start: 10, end: 30,
		attrs: []*commonpb.KeyValue{strKV("lock.outcome", "granted")}})); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), "\n"); n != 3 || !strings.HasSuffix(string(raw), "\n") {
		t.Fatalf("file holds %d newline-terminated lines, want 3:\n%s", n, raw)
	}
	tr, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Lines != 3 || tr.Truncated || len(tr.Spans) != 2 {
		t.Fatalf("trace: %d lines, truncated %v, %d spans; want 3, false, 2", tr.Lines, tr.Truncated, len(tr.Spans))
	}
	if s := tr.Spans[0]; s.SpanID != testSpan || s.End != 30 || s.Attrs.Str("lock.outcome") != "granted" || s.Records != 2 {
		t.Errorf("appended final record not merged: %+v", s)
	}
}

func TestCreateAndAppendErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Append(filepath.Join(dir, "missing.jsonl")); err == nil {
		t.Error("Append to a missing file succeeded")
	}
	if _, err := Create(filepath.Join(dir, "no", "such", "dir", FileName)); err == nil {
		t.Error("Create in a missing folder succeeded")
	}
}
