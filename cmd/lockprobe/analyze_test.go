package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// sameStreamed analyses a real run's trace as `lockprobe analyze` does — streamed, each attempt
// and hold let go into the model at its final record — and as the whole file read first: the
// model's results (verdict, findings, graph, statistics, attempts, holds) are the same, field
// for field. A lockprobe run's trace never needs the whole-file fallback.
func sameStreamed(t *testing.T, out string) {
	t.Helper()
	opts := analysis.Options{StuckAfter: analysis.DefaultStuckAfter}
	whole, err := tracefile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	want := analysis.Analyze(whole, opts)
	b := analysis.NewBuilder(opts)
	rest, err := tracefile.StreamFile(out, tracefile.StreamOptions{Release: analysis.Streamed, Done: b.Add})
	if err != nil {
		t.Fatalf("streaming the run's trace: %v", err)
	}
	if rest.Streamed == 0 {
		t.Fatal("no span was streamed")
	}
	if got := b.Finish(rest); !reflect.DeepEqual(got, want) {
		t.Errorf("the streamed analysis of the run's trace differs from the whole file's:\n%+v\nwant\n%+v", got.Verdict, want.Verdict)
	}
}

// TestAnalyzeFallsBackOnALateRecord: a trace whose attempt gets a record after its final one
// (an older controller's watcher event that raced the end) cannot be streamed; analyze reads it
// whole and reports what the whole file says.
func TestAnalyzeFallsBackOnALateRecord(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, tracefile.FileName)
	w, err := tracefile.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	traceID := bytes.Repeat([]byte{0x42}, 16)
	id := func(b byte) []byte { return bytes.Repeat([]byte{b}, 8) }
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	num := func(k string, v int64) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
	}
	const base = uint64(1_700_000_000_000_000_000)
	write := func(spans ...*tracepb.Span) {
		if err := w.WriteSpans(&tracepb.ResourceSpans{ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}); err != nil {
			t.Fatal(err)
		}
	}
	lock := []*commonpb.KeyValue{num(semconv.LockerID, 0), str(semconv.LockKind, "posix"), str(semconv.LockMode, "write"),
		num(semconv.LockStart, 0), num(semconv.LockLen, 0), str(semconv.FilePath, "/f")}
	run := []*commonpb.KeyValue{num(semconv.RunStartNS, int64(base))}
	write(&tracepb.Span{TraceId: traceID, SpanId: id(1), Name: semconv.SpanRun, StartTimeUnixNano: base, Attributes: run})
	write(&tracepb.Span{TraceId: traceID, SpanId: id(2), ParentSpanId: id(1), Name: semconv.SpanLocker, StartTimeUnixNano: base,
		EndTimeUnixNano: base + 9e9, Attributes: []*commonpb.KeyValue{num(semconv.LockerID, 0), str(semconv.LockerRole, "locker")}})
	// The attempt's final record says it was granted; a later record says more: analyze must
	// take the merge of both, not the span as it stood at its final record.
	write(&tracepb.Span{TraceId: traceID, SpanId: id(3), ParentSpanId: id(2), Name: semconv.SpanAcquire, StartTimeUnixNano: base + 1e9,
		EndTimeUnixNano: base + 2e9, Attributes: append(lock, str(semconv.LockOutcome, "granted"))})
	write(&tracepb.Span{TraceId: traceID, SpanId: id(3), Name: semconv.SpanAcquire, StartTimeUnixNano: base + 1e9,
		Attributes: []*commonpb.KeyValue{str(semconv.LockCmdText, "0: write late")}})
	write(&tracepb.Span{TraceId: traceID, SpanId: id(1), Name: semconv.SpanRun, StartTimeUnixNano: base, EndTimeUnixNano: base + 9e9, Attributes: run})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tracefile.StreamFile(path, tracefile.StreamOptions{Release: analysis.Streamed, Done: func(*tracefile.Span) {}}); err == nil {
		t.Fatal("the trace streams: the test does not test the fallback")
	}
	var stdout, stderr bytes.Buffer
	out := filepath.Join(dir, "out")
	if err := analyzeCmd([]string{"-out", out, path}, &stdout, &stderr); err != nil {
		t.Fatalf("analyze: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	v, err := os.ReadFile(filepath.Join(out, "verdict.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(v, []byte("0: write late")) {
		t.Errorf("verdict.json lacks the late record's attribute:\n%s", v)
	}
}
