package tracefile

import (
	"bytes"
	"math"
	"testing"
	"unicode/utf8"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func kvs(pairs ...any) []*commonpb.KeyValue {
	var out []*commonpb.KeyValue
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, &commonpb.KeyValue{Key: pairs[i].(string), Value: pairs[i+1].(*commonpb.AnyValue)})
	}
	return out
}

func sv(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

// richRequest uses every field and value kind the encoder writes.
func richRequest(text string, f float64) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:  &resourcepb.Resource{Attributes: kvs("service.name", sv("lockprobe"), "odd", sv(text)), DroppedAttributesCount: 2},
		SchemaUrl: "https://example.invalid/schema",
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "scope", Version: "v1", Attributes: kvs("a", sv("b")), DroppedAttributesCount: 1},
			Spans: []*tracepb.Span{{
				TraceId: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 0xff},
				ParentSpanId: []byte{9, 9, 9, 9, 9, 9, 9, 9}, TraceState: "k=v", Flags: 257, Name: text,
				Kind: tracepb.Span_SPAN_KIND_CLIENT, StartTimeUnixNano: math.MaxUint64, EndTimeUnixNano: 1,
				Attributes: kvs(
					"s", sv(text),
					"i", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: math.MinInt64}},
					"d", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: f}},
					"b", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}},
					"y", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte(text)}},
					"arr", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{sv("x"), sv(text)}}}},
					"empty", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{}}},
					"kv", &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: kvs("in", sv(text))}}},
					"nil", &commonpb.AnyValue{},
				),
				DroppedAttributesCount: 3, DroppedEventsCount: 4, DroppedLinksCount: 5,
				Events: []*tracepb.Span_Event{{TimeUnixNano: 42, Name: "lock.conflict", Attributes: kvs("k", sv(text)), DroppedAttributesCount: 1}, {}},
				Links:  []*tracepb.Span_Link{{TraceId: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanId: []byte{8, 7, 6, 5, 4, 3, 2, 1}, TraceState: "t", Attributes: kvs("l", sv("m")), DroppedAttributesCount: 1, Flags: 1}},
				Status: &tracepb.Status{Message: text, Code: tracepb.Status_STATUS_CODE_ERROR},
			}, {}},
		}},
	}}}
}

// TestAppendRequestReadsBackWithProtojson checks the hand-written encoder against the reference
// reader: protojson (after the id rewrite) must read back exactly the request written.
func TestAppendRequestReadsBackWithProtojson(t *testing.T) {
	texts := []string{"", "plain", "quote\" back\\slash", "ctl \x00\x01\x1f\x7f\n\r\t", "ünïcødé ✓ 😀", "</script>", "line\u2028sep\u2029"}
	floats := []float64{0, -0.5, 1e300, 3.141592653589793, math.Inf(1), math.Inf(-1), 5e-324}
	for i, text := range texts {
		req := richRequest(text, floats[i%len(floats)])
		line, err := MarshalLine(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalLine(line)
		if err != nil {
			t.Fatalf("%q: protojson cannot read the line: %v\n%s", text, err, line)
		}
		if !proto.Equal(got, req) {
			t.Errorf("%q: read back differs\nwant %v\ngot  %v", text, protojson.Format(req), protojson.Format(got))
		}
		// The project's own fast reader agrees.
		tr, err := Read(bytesReader(append(line, '\n')))
		if err != nil || len(tr.Spans) != 2 {
			t.Errorf("%q: tracefile.Read: %v, %d spans", text, err, len(tr.Spans))
		}
	}
}

func TestAppendRequestInvalidUTF8(t *testing.T) {
	req := richRequest("bad \xff\xfe utf8", 1)
	line, _ := MarshalLine(req)
	got, err := UnmarshalLine(line)
	if err != nil {
		t.Fatalf("invalid UTF-8 made an unreadable line: %v", err)
	}
	if name := got.ResourceSpans[0].ScopeSpans[0].Spans[0].Name; name != "bad \ufffd\ufffd utf8" {
		t.Errorf("name %q", name)
	}
}

func FuzzAppendRequest(f *testing.F) {
	f.Add("seed", 1.5)
	f.Add("\x00\"\\\u2028", math.Inf(1))
	f.Fuzz(func(t *testing.T, text string, x float64) {
		if math.IsNaN(x) {
			x = 0 // NaN never equals itself
		}
		req := richRequest(text, x)
		line, _ := MarshalLine(req)
		got, err := UnmarshalLine(line)
		if err != nil {
			t.Fatalf("unreadable line: %v\n%s", err, line)
		}
		if !proto.Equal(got, req) && isValidUTF8(text) {
			t.Fatalf("read back differs for %q", text)
		}
	})
}

func isValidUTF8(s string) bool { return utf8.ValidString(s) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
