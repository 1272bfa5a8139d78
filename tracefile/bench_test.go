package tracefile

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

const benchSpans = 10_000

// benchRequests returns, per span, a partial record and a final one: the controller's pattern.
func benchRequests(b *testing.B) (reqs []*coltracepb.ExportTraceServiceRequest) {
	for i := range benchSpans {
		var id [8]byte
		binary.BigEndian.PutUint64(id[:], uint64(i+1))
		r := rec{span: hex.EncodeToString(id[:]), parent: testParent, name: "lock.acquire", start: uint64(t0 + i*1000),
			attrs: []*commonpb.KeyValue{strKV("lock.outcome", "waiting"), strKV("lock.mode", "write"), intKV("lock.start", int64(i)),
				intKV("lock.len", 1), strKV("lock.kind", "ofd"), intKV("locker.id", int64(i%8))}}
		reqs = append(reqs, reqOf(b, r))
		r.end = r.start + 500
		r.attrs = append(r.attrs[1:], strKV("lock.outcome", "granted"))
		r.events = []*tracepb.Span_Event{event("lock.conflict", r.start+100, intKV("proc.lock.pid", 42))}
		reqs = append(reqs, reqOf(b, r))
	}
	return reqs
}

func BenchmarkWrite(b *testing.B) {
	reqs := benchRequests(b)
	path := filepath.Join(b.TempDir(), FileName)
	b.ResetTimer()
	for b.Loop() {
		w, err := Create(path)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range reqs {
			if err := w.Write(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(reqs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), FileName)
	w, err := Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range benchRequests(b) {
		if err := w.Write(r); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		tr, err := Read(bytes.NewReader(raw))
		if err != nil || len(tr.Spans) != benchSpans {
			b.Fatalf("%v, %d spans", err, len(tr.Spans))
		}
	}
	b.ReportMetric(float64(2*benchSpans)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(len(raw))/float64(2*benchSpans), "bytes/record")
}
