package tracefile

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

const benchSpans = 10_000

// benchRequests returns, per span, a partial record and a final one: the controller's pattern.
func benchRequests(b *testing.B) (partial, final []*coltracepb.ExportTraceServiceRequest) {
	for i := range benchSpans {
		var id [8]byte
		binary.BigEndian.PutUint64(id[:], uint64(i+1))
		r := rec{span: hex.EncodeToString(id[:]), parent: testParent, name: "lock.acquire", start: uint64(t0 + i*1000),
			attrs: []*commonpb.KeyValue{strKV("lock.outcome", "waiting"), strKV("lock.mode", "write"), intKV("lock.start", int64(i)),
				intKV("lock.len", 1), strKV("lock.kind", "ofd"), intKV("locker.id", int64(i%8))}}
		partial = append(partial, reqOf(b, r))
		r.end = r.start + 500
		r.attrs = append(r.attrs[1:], strKV("lock.outcome", "granted"))
		r.events = []*tracepb.Span_Event{event("lock.conflict", r.start+100, intKV("proc.lock.pid", 42))}
		final = append(final, reqOf(b, r))
	}
	return partial, final
}

func BenchmarkMarshalLine(b *testing.B) {
	_, final := benchRequests(b)
	b.ReportAllocs()
	var bytesOut int
	for b.Loop() {
		bytesOut = 0
		for _, req := range final {
			line, err := MarshalLine(req)
			if err != nil {
				b.Fatal(err)
			}
			bytesOut += len(line) + 1
		}
	}
	b.SetBytes(int64(bytesOut))
	b.ReportMetric(float64(benchSpans*b.N)/b.Elapsed().Seconds(), "spans/s")
}

func BenchmarkRead(b *testing.B) {
	partial, final := benchRequests(b)
	var buf bytes.Buffer
	for i := range partial {
		for _, req := range []*coltracepb.ExportTraceServiceRequest{partial[i], final[i]} {
			line, err := MarshalLine(req)
			if err != nil {
				b.Fatal(err)
			}
			buf.Write(line)
			buf.WriteByte('\n')
		}
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		tr, err := Read(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		if len(tr.Spans) != benchSpans {
			b.Fatalf("%d spans", len(tr.Spans))
		}
	}
	b.ReportMetric(float64(benchSpans*b.N)/b.Elapsed().Seconds(), "spans/s")
}
