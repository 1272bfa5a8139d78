package jaeger

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/otlpexport"
	"github.com/lockprobe/lockprobe/tracefile"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func integer(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// threeSpans is a hand-made run: lockprobe.run → lockprobe.locker →
// lock.acquire, the attempt with a tag and a lock.conflict event.
func threeSpans(traceID byte) []*tracepb.ResourceSpans {
	tid := make([]byte, 16)
	tid[0], tid[15] = 0x10, traceID
	id := func(n byte) []byte { return []byte{0, 0, 0, 0, 0, 0, traceID, n} }
	t0 := uint64(time.Now().Add(-time.Minute).UnixNano())
	ms := uint64(time.Millisecond)
	spans := []*tracepb.Span{
		{TraceId: tid, SpanId: id(1), Name: "lockprobe.run", StartTimeUnixNano: t0, EndTimeUnixNano: t0 + 100*ms},
		{TraceId: tid, SpanId: id(2), ParentSpanId: id(1), Name: "lockprobe.locker",
			StartTimeUnixNano: t0 + ms, EndTimeUnixNano: t0 + 90*ms},
		{TraceId: tid, SpanId: id(3), ParentSpanId: id(2), Name: "lock.acquire",
			StartTimeUnixNano: t0 + 2*ms, EndTimeUnixNano: t0 + 50*ms,
			Attributes: []*commonpb.KeyValue{str("lock.kind", "posix"), integer("lock.start", 0)},
			Events: []*tracepb.Span_Event{{TimeUnixNano: t0 + 10*ms, Name: "lock.conflict",
				Attributes: []*commonpb.KeyValue{integer("lock.owner.pid", 4242)}}}},
		// A partial record: must not reach Jaeger.
		{TraceId: tid, SpanId: id(4), ParentSpanId: id(2), Name: "lock.hold", StartTimeUnixNano: t0 + 50*ms},
	}
	return []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			str("service.name", "overwritten"), str("host.name", "node1"), integer("process.pid", 777)}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "lockprobe"}, Spans: spans}},
	}}
}

func TestForwarderToJaeger(t *testing.T) {
	j := Start(t)
	t.Setenv("OTEL_SERVICE_NAME", "")
	tests := []struct {
		name     string
		endpoint string
		traceID  byte
	}{
		{name: "http", endpoint: j.OTLPHTTP, traceID: 1},
		{name: "grpc", endpoint: j.OTLPGRPC, traceID: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service := "lockprobe-e2e-" + tt.name
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			f, err := otlpexport.New(ctx, otlpexport.Options{Endpoint: tt.endpoint, ServiceName: service})
			if err != nil {
				t.Fatal(err)
			}
			f.Enqueue(threeSpans(tt.traceID))
			st, err := f.Close(ctx)
			if err != nil || st.Exported != 3 || st.Partial != 1 {
				t.Fatalf("Close = %+v, %v; want 3 exported, 1 partial", st, err)
			}

			tr, err := j.WaitForTrace(ctx, service, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.Spans) != 3 {
				t.Errorf("trace has %d spans, want 3 (the partial one left out)", len(tr.Spans))
			}
			run, ok1 := tr.Span("lockprobe.run")
			locker, ok2 := tr.Span("lockprobe.locker")
			acq, ok3 := tr.Span("lock.acquire")
			if !ok1 || !ok2 || !ok3 {
				t.Fatalf("spans %+v, want run, locker and acquire", tr.Spans)
			}
			if run.Parent() != "" || locker.Parent() != run.SpanID || acq.Parent() != locker.SpanID {
				t.Errorf("parents: run %q, locker %q (want %s), acquire %q (want %s)",
					run.Parent(), locker.Parent(), run.SpanID, acq.Parent(), locker.SpanID)
			}
			if want := hex.EncodeToString([]byte{0, 0, 0, 0, 0, 0, tt.traceID, 3}); acq.SpanID != want {
				t.Errorf("acquire span id %q, want %q", acq.SpanID, want)
			}
			if v, _ := Lookup(acq.Tags, "lock.kind"); v != "posix" {
				t.Errorf("lock.kind tag = %v, tags %+v", v, acq.Tags)
			}
			ev, ok := acq.Event("lock.conflict")
			if !ok {
				t.Fatalf("no lock.conflict log; logs %+v", acq.Logs)
			}
			if v, _ := Lookup(ev.Fields, "lock.owner.pid"); v != json.Number("4242") {
				t.Errorf("event field lock.owner.pid = %v (%T), fields %+v", v, v, ev.Fields)
			}
			p := tr.Processes[acq.ProcessID]
			if p.ServiceName != service {
				t.Errorf("process service %q, want %q", p.ServiceName, service)
			}
			if v, _ := Lookup(p.Tags, "host.name"); v != "node1" {
				t.Errorf("process tags %+v lack host.name=node1", p.Tags)
			}
			t.Logf("acquire tags %+v; logs %+v; process %+v", acq.Tags, acq.Logs, p)
		})
	}
}

// TestExportFileToJaeger sends a saved trace file whose run was cut short:
// the attempt that never returned must show up as blocked.
func TestExportFileToJaeger(t *testing.T) {
	j := Start(t)
	t.Setenv("OTEL_SERVICE_NAME", "")
	rs := threeSpans(3)
	spans := rs[0].ScopeSpans[0].Spans
	// Only the start record of the acquire made it into the file, and the
	// hold (index 3) stays partial too.
	spans[2].EndTimeUnixNano = 0
	path := filepath.Join(t.TempDir(), tracefile.FileName)
	w, err := tracefile.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rs}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	service := "lockprobe-e2e-file"
	st, err := otlpexport.ExportFile(ctx, path, otlpexport.Options{Endpoint: j.OTLPHTTP, ServiceName: service})
	if err != nil || st.Exported != 4 {
		t.Fatalf("ExportFile = %+v, %v; want 4 exported", st, err)
	}
	tr, err := j.WaitForTrace(ctx, service, 4)
	if err != nil {
		t.Fatal(err)
	}
	acq, ok := tr.Span("lock.acquire")
	if !ok {
		t.Fatalf("no lock.acquire in %+v", tr.Spans)
	}
	if v, _ := Lookup(acq.Tags, "lock.outcome"); v != "blocked" {
		t.Errorf("lock.outcome = %v, want blocked; tags %+v", v, acq.Tags)
	}
	// It ends with the latest instant of the file: the run span's end.
	runEnd := int64(spans[0].EndTimeUnixNano / 1000)
	if end := acq.StartTime + acq.Duration; end != runEnd {
		t.Errorf("blocked acquire ends at %d µs, want %d (the file's last instant)", end, runEnd)
	}
}
