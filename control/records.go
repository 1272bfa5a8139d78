package control

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// The controller writes its own spans (the root, the snapshot, exits, and the final records of
// spans left open) directly as OTLP records: it needs exact ids and instants, not an SDK.

// The attribute constructors are tracefile's, under short names for the many call sites here.
var (
	str     = tracefile.Str
	boolean = tracefile.Bool
	num     = tracefile.Int
	ints    = tracefile.Ints
	strs    = tracefile.Strs
)

// controllerResource is the resource of the controller's own spans.
func controllerResource(version string) *resourcepb.Resource {
	host, _ := os.Hostname()
	return &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
		str(semconv.ServiceName, "lockprobe"),
		str(semconv.HostName, host),
		num(semconv.ProcessPID, int64(os.Getpid())),
		str(semconv.LockerRole, "controller"),
		str(semconv.ToolVersion, version),
	}}
}

func resourceSpans(res *resourcepb.Resource, spans ...*tracepb.Span) *tracepb.ResourceSpans {
	return &tracepb.ResourceSpans{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{
		Scope: &commonpb.InstrumentationScope{Name: "github.com/lockprobe/lockprobe/control"},
		Spans: spans,
	}}}
}

func newSpanID() []byte {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return b
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// writeRoot writes the root span: partial at the start, final at the end.
func (r *run) writeRoot(final bool) {
	o := r.opts
	attrs := []*commonpb.KeyValue{
		str(semconv.RunCommand, o.CommandLine),
		str(semconv.RunScenario, o.ScenarioName),
		str(semconv.RunScenarioTx, o.ScenarioText),
		num(semconv.RunProcs, int64(len(o.Queues))),
		num(semconv.RunTimeout, int64(o.Timeout)),
		num(semconv.RunPoll, int64(o.Poll)),
		strs("lockprobe.files", o.Files),
	}
	if o.Launch != nil {
		attrs = append(attrs, str(semconv.RunLauncher, o.Launcher), str(semconv.RunDelivery, o.Delivery), strs(semconv.RunNodes, o.Nodes))
	}
	if !r.scenAt.IsZero() {
		attrs = append(attrs, num(semconv.RunStartNS, r.scenAt.UnixNano()))
	}
	span := &tracepb.Span{TraceId: r.traceID[:], SpanId: r.rootID[:], Name: semconv.SpanRun,
		Kind: tracepb.Span_SPAN_KIND_INTERNAL, StartTimeUnixNano: uint64(r.start.UnixNano())}
	if final {
		attrs = append(attrs, str(semconv.RunEndReason, r.res.EndReason), num(semconv.RunLost, int64(r.lost())))
		span.EndTimeUnixNano = uint64(r.res.End.UnixNano())
	}
	span.Attributes = attrs
	r.writeRecord(resourceSpans(controllerResource(o.Version), span))
}

// VerdictRecord is the root span's record that carries the verdict, as attributes and an event,
// so that a collector search by lock.verdict finds the runs that hung.
func VerdictRecord(res *Result, version, class string, exit int, summary string) *tracepb.ResourceSpans {
	end := uint64(res.End.UnixNano())
	span := &tracepb.Span{TraceId: mustHex(res.TraceID), SpanId: mustHex(res.RootSpanID), Name: semconv.SpanRun,
		StartTimeUnixNano: uint64(res.Start.UnixNano()), EndTimeUnixNano: end,
		Attributes: []*commonpb.KeyValue{str(semconv.Verdict, class), num(semconv.VerdictExit, int64(exit))},
		Events: []*tracepb.Span_Event{{TimeUnixNano: end, Name: semconv.EventVerdict,
			Attributes: []*commonpb.KeyValue{str(semconv.Verdict, class), num(semconv.VerdictExit, int64(exit)), str(semconv.VerdictText, summary)}}},
	}
	return resourceSpans(controllerResource(version), span)
}

// WriteVerdict appends the verdict record to the run's trace file.
func WriteVerdict(res *Result, rec *tracepb.ResourceSpans) error {
	w, err := tracefile.Append(res.TracePath)
	if err != nil {
		return err
	}
	if err := w.WriteSpans(rec); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// recordExit adds a locker.exit event to the member's own span: how it ended, whether it said
// goodbye first, and how many records it still had queued if it did not.
func (r *run) recordExit(m *member) {
	if m.lockerSpanID == "" {
		return
	}
	name := semconv.SpanLocker
	if m.role == roleObserver {
		name = semconv.SpanObserver
	}
	span := &tracepb.Span{TraceId: mustHex(m.traceID), SpanId: mustHex(m.lockerSpanID), Name: name,
		Events: []*tracepb.Span_Event{{TimeUnixNano: uint64(m.exit.At.UnixNano()), Name: semconv.EventExit,
			Attributes: []*commonpb.KeyValue{str(semconv.ExitStatus, m.exit.Status), str(semconv.ExitSignal, m.exit.Signal),
				num(semconv.ProcessPID, int64(m.pid)), num(semconv.LockerID, int64(m.id)),
				boolean(semconv.ExitGoodbye, m.saidBye()), num(semconv.ExitUnsent, int64(m.unsent())),
				num(semconv.ExitUndelivered, int64(m.undelivered))}}}}
	r.writeRecord(resourceSpans(controllerResource(r.opts.Version), span))
}

// closeOpenSpans writes a final record for every span no locker ended: an attempt still waiting
// is `blocked`, a hold is `run-end` (or `exit` when its process died first). The end instant
// is the run's end, or the process's death.
func (r *run) closeOpenSpans() {
	exitAt := map[int64]time.Time{}
	for _, m := range r.members {
		if m.phase == phaseExited && !m.saidBye() {
			exitAt[int64(m.id)] = m.exit.At
		}
	}
	end := r.res.End
	for _, s := range r.merger.OpenSpans() {
		if s.Name == semconv.SpanRun {
			continue
		}
		id := s.Resource.IntOr(semconv.LockerID, -1000)
		at, died := exitAt[id]
		if !died {
			at = end
		}
		// A span that began after the end (a command under way as the run ended) ends where it
		// began: never before it.
		if at.UnixNano() < s.Start {
			at = time.Unix(0, s.Start)
		}
		rec := &tracepb.Span{TraceId: mustHex(s.TraceID), SpanId: mustHex(s.SpanID), ParentSpanId: mustHex(s.ParentID),
			Name: s.Name, StartTimeUnixNano: uint64(s.Start), EndTimeUnixNano: uint64(at.UnixNano())}
		switch s.Name {
		case semconv.SpanAcquire:
			rec.Attributes = append(rec.Attributes, str(semconv.LockOutcome, semconv.OutcomeBlocked.String()))
		case semconv.SpanHold:
			reason := semconv.HoldRunEnd
			if died {
				reason = semconv.HoldExit
			}
			rec.Attributes = append(rec.Attributes, str(semconv.LockHoldEnd, reason.String()))
		}
		if died {
			rec.Attributes = append(rec.Attributes, str(semconv.ClosedBy, "controller: process exited"))
		} else {
			rec.Attributes = append(rec.Attributes, str(semconv.ClosedBy, "controller: run ended"))
		}
		res := &resourcepb.Resource{}
		for _, kv := range s.Resource {
			if sv, ok := kv.Value.(string); ok {
				res.Attributes = append(res.Attributes, str(kv.Key, sv))
			} else if iv, ok := kv.Value.(int64); ok {
				res.Attributes = append(res.Attributes, num(kv.Key, iv))
			}
		}
		r.writeRecord(resourceSpans(res, rec))
	}
}
