package tracefile

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
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
			strKV("note", `say "spanId": "x"`)},
		events: []*tracepb.Span_Event{event("lock.conflict", 1_700_000_000_100_000_000, intKV("proc.lock.pid", 77))}}
}

// Every value kind survives the file, and `zstd -d` of the file is the Collector file
// exporter's proto framing.
func TestWriteReadAllValueKinds(t *testing.T) {
	data, _ := traceFile(t, []rec{fullRecord()})
	tr, err := Read(bytes.NewReader(data))
	if err != nil || len(tr.Spans) != 1 {
		t.Fatalf("%+v, %v", tr, err)
	}
	a := tr.Spans[0].Attrs
	want := Attrs{{"lock.outcome", "granted"}, {"lock.start", int64(10)}, {"lock.ratio", 0.5}, {"lock.held", true}, {"lock.raw", "cafe"},
		{"proc.stack", []any{"a", "b"}}, {"lock.map", map[string]any{"n": int64(1)}}, {"note", `say "spanId": "x"`}}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("attributes\n%#v\nwant\n%#v", a, want)
	}
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	again, err := Read(bytes.NewReader(raw.Bytes()))
	if err != nil || len(again.Spans) != 1 || !reflect.DeepEqual(again.Spans[0].Attrs, want) {
		t.Errorf("the decompressed frames do not read back: %+v, %v", again, err)
	}
}

// WriteJSON's lines read back as the same spans.
func TestWriteJSONReadsBack(t *testing.T) {
	data, _ := traceFile(t, append(attemptRecords(), []rec{fullRecord()})...)
	tr, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, tr.Spans, 1); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(js.String(), "\n"); n != len(tr.Spans) {
		t.Errorf("%d lines of at most 1 byte for %d spans, want one span a line", n, len(tr.Spans))
	}
	var big bytes.Buffer
	if err := WriteJSON(&big, tr.Spans, 1<<20); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(big.String(), "\n"); n != 1 {
		t.Errorf("%d lines of at most 1 MiB for %d small spans, want 1", n, len(tr.Spans))
	}
	if !strings.Contains(js.String(), `"spanId":"`+testSpan+`"`) || !strings.Contains(js.String(), `"traceId":"`+testTrace+`"`) {
		t.Errorf("ids not in hex:\n%s", js.String())
	}
	back, err := Read(&js)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Spans) != len(tr.Spans) {
		t.Fatalf("%d spans back, want %d", len(back.Spans), len(tr.Spans))
	}
	for i, s := range back.Spans {
		w := tr.Spans[i]
		if s.SpanID != w.SpanID || s.Name != w.Name || s.Start != w.Start || s.End != w.End || !reflect.DeepEqual(s.Attrs, w.Attrs) ||
			!reflect.DeepEqual(s.Events, w.Events) || !reflect.DeepEqual(s.Resource, w.Resource) || *s.Scope != *w.Scope {
			t.Errorf("span %d back\n%+v\nwant\n%+v", i, s, w)
		}
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
	if w.Requests() != 2 {
		t.Errorf("Requests() = %d, want 2", w.Requests())
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
	tr, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Requests != 3 || tr.Truncated || len(tr.Spans) != 2 {
		t.Fatalf("trace: %d requests, truncated %v, %d spans; want 3, false, 2", tr.Requests, tr.Truncated, len(tr.Spans))
	}
	if s := tr.Spans[0]; s.SpanID != testSpan || s.End != 30 || s.Attrs.Str("lock.outcome") != "granted" || s.Records != 2 {
		t.Errorf("appended final record not merged: %+v", s)
	}
}

func TestCreateAndAppendErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Append(filepath.Join(dir, "missing"+FileName)); err == nil {
		t.Error("Append to a missing file succeeded")
	}
	if _, err := Create(filepath.Join(dir, "no", "such", "dir", FileName)); err == nil {
		t.Error("Create in a missing folder succeeded")
	}
}

// A Background writer writes the same requests in the same order as one that writes on the
// caller's goroutine, the queued ones included at Close, and counts them once written.
func TestBackgroundWritesInOrder(t *testing.T) {
	var reqs [][]byte
	for i := range 200 {
		r := fullRecord()
		r.start += uint64(i)
		b, err := Encode(reqOf(t, append(attemptRecords()[i%len(attemptRecords())], r)...))
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, b)
	}
	files := map[bool][]byte{}
	for _, background := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), FileName)
		w, err := Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if background {
			w.Background(4) // fewer than the requests: WriteEncoded waits for room
		}
		for _, b := range reqs {
			if err := w.WriteEncoded(b); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := w.Requests(); got != len(reqs) {
			t.Errorf("background %v: %d requests written, want %d", background, got, len(reqs))
		}
		if err := w.WriteEncoded(reqs[0]); err == nil {
			t.Errorf("background %v: a write after Close succeeded", background)
		}
		var got [][]byte
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Requests(f, func(raw []byte) error { got = append(got, bytes.Clone(raw)); return nil }); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if !reflect.DeepEqual(got, reqs) {
			t.Errorf("background %v: the file's %d requests are not the %d written, in order", background, len(got), len(reqs))
		}
		files[background], _ = os.ReadFile(path)
	}
	if !bytes.Equal(files[false], files[true]) {
		t.Error("the background writer's file differs from the other's")
	}
}
