package lptest

import (
	"encoding/binary"
	"fmt"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// senderBatch is the lockers' batch: the sender takes what was queued 2 ms after a batch's first
// item (probe's batchDelay) and writes one request of it, one record per span.
const senderBatch = 2 * time.Millisecond

// SynthTrace writes a trace of about events events (spans plus span events) the way a run
// writes it: lockers take turns at a write lock, each attempt waits behind the previous holder
// and records it as conflict owner. Each locker's records go as its sender sends them: what it
// queued within senderBatch of a batch's first item is one request under its resource, a span
// that began and ended in the batch one final record, one still open a partial record (its
// start attributes, or just its new events).
func SynthTrace(path string, events, lockers int) error {
	w, err := tracefile.Create(path)
	if err != nil {
		return err
	}
	defer w.Close()
	traceID := make([]byte, 16)
	traceID[0] = 0x42
	var next uint64
	newID := func() []byte {
		next++
		id := make([]byte, 8)
		binary.BigEndian.PutUint64(id, next)
		return id
	}
	const base = int64(1_700_000_000_000_000_000)
	scope := &commonpb.InstrumentationScope{Name: "github.com/lockprobe/lockprobe/probe"}
	rootID := newID()
	ctl := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str(semconv.ServiceName, "lockprobe"), str(semconv.LockerRole, "controller")}}
	line := func(res *resourcepb.Resource, spans ...*tracepb.Span) error {
		return w.WriteSpans(&tracepb.ResourceSpans{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{Scope: scope, Spans: spans}}})
	}
	rounds := events / 3
	end := base + int64(rounds+2)*int64(time.Millisecond)
	root := &tracepb.Span{TraceId: traceID, SpanId: rootID, Name: semconv.SpanRun, StartTimeUnixNano: uint64(base),
		Attributes: []*commonpb.KeyValue{num(semconv.RunProcs, int64(lockers)), num(semconv.RunPoll, 1e8), num(semconv.RunStartNS, base), num(semconv.RunLost, 0)}}
	if err := line(ctl, root); err != nil {
		return err
	}
	// op is what a locker's lock thread queues: a span's start (its start attributes), an
	// event, or its end (the final record).
	type op struct {
		t     int64
		span  *tracepb.Span // the final record; its start attributes are start
		start []*commonpb.KeyValue
		ev    *tracepb.Span_Event
		kind  int // 0 start, 1 event, 2 end
	}
	type proc struct {
		res   *resourcepb.Resource
		span  *tracepb.Span
		ops   []op  // the open batch
		since int64 // its first item's instant
	}
	// flush writes a locker's batch as its sender would.
	flush := func(p *proc) error {
		if len(p.ops) == 0 {
			return nil
		}
		type rec struct {
			final  *tracepb.Span
			begun  bool
			events []*tracepb.Span_Event
			ended  bool
		}
		var order []*rec
		byID := map[*tracepb.Span]*rec{}
		for _, o := range p.ops {
			r := byID[o.span]
			if r == nil {
				r = &rec{final: o.span}
				byID[o.span] = r
				order = append(order, r)
			}
			switch o.kind {
			case 0:
				r.begun = true
			case 1:
				r.events = append(r.events, o.ev)
			case 2:
				r.ended = true
			}
		}
		var spans []*tracepb.Span
		for _, r := range order {
			if r.ended {
				spans = append(spans, r.final)
				continue
			}
			partial := &tracepb.Span{TraceId: r.final.TraceId, SpanId: r.final.SpanId, ParentSpanId: r.final.ParentSpanId, Name: r.final.Name,
				StartTimeUnixNano: r.final.StartTimeUnixNano, Events: r.events}
			if r.begun {
				for _, o := range p.ops {
					if o.span == r.final && o.kind == 0 {
						partial.Attributes = o.start
					}
				}
			}
			spans = append(spans, partial)
		}
		p.ops = p.ops[:0]
		return line(p.res, spans...)
	}
	queue := func(p *proc, o op) error {
		if len(p.ops) > 0 && o.t >= p.since+int64(senderBatch) {
			if err := flush(p); err != nil {
				return err
			}
		}
		if len(p.ops) == 0 {
			p.since = o.t
		}
		p.ops = append(p.ops, o)
		return nil
	}
	procs := make([]*proc, lockers)
	for l := range procs {
		res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			str(semconv.ServiceName, "lockprobe"), str(semconv.HostName, "vm"), num(semconv.ProcessPID, int64(1000+l)),
			num(semconv.LockerID, int64(l)), str(semconv.LockerRole, "locker"), str(semconv.Node, "vm"),
			str(semconv.FSType, "ext4"), num(semconv.FSMagic, 0xEF53), str(semconv.FSMountType, "ext4"),
			str(semconv.FSMountPoint, "/"), str(semconv.FSMountSource, "/dev/vda"), str(semconv.OSKernel, "6.18.0"),
			str(semconv.ToolVersion, "bench")}}
		s := &tracepb.Span{TraceId: traceID, SpanId: newID(), ParentSpanId: rootID, Name: semconv.SpanLocker, StartTimeUnixNano: uint64(base),
			Attributes: []*commonpb.KeyValue{num(semconv.LockerID, int64(l))}}
		procs[l] = &proc{res: res, span: s}
		if err := line(res, &tracepb.Span{TraceId: s.TraceId, SpanId: s.SpanId, ParentSpanId: s.ParentSpanId, Name: s.Name,
			StartTimeUnixNano: s.StartTimeUnixNano, Attributes: s.Attributes}); err != nil {
			return err
		}
	}
	step := int64(time.Millisecond)
	for r := 0; r < rounds; r++ {
		l := r % lockers
		p := procs[l]
		begin := base + int64(r)*step + 10_000
		grant := base + int64(r+1)*step
		lock := []*commonpb.KeyValue{num(semconv.LockerID, int64(l)), str(semconv.LockKind, semconv.KindPOSIX.String()), str(semconv.LockMode, semconv.ModeWrite.String()),
			num(semconv.LockStart, 0), num(semconv.LockLen, 0), str(semconv.FileLogical, "{file}"), str(semconv.FilePath, "/tmp/lock-file"), num(semconv.LockFD, 0)}
		acqAttrs := append(append([]*commonpb.KeyValue{}, lock...), str(semconv.LockStyle, semconv.StyleWait.String()), num(semconv.LockCmdLine, 4),
			str(semconv.LockCmdText, "all: write style=wait"), num(semconv.LockCmdIndex, int64(r/lockers)))
		acqID, holdID := newID(), newID()
		mk := func(id []byte, name string, start, end int64, attrs []*commonpb.KeyValue, events ...*tracepb.Span_Event) *tracepb.Span {
			return &tracepb.Span{TraceId: traceID, SpanId: id, ParentSpanId: p.span.SpanId, Name: name, StartTimeUnixNano: uint64(start),
				EndTimeUnixNano: uint64(end), Attributes: attrs, Events: events}
		}
		owner := (l + lockers - 1) % lockers
		ev := &tracepb.Span_Event{TimeUnixNano: uint64(begin + 5000), Name: semconv.EventConflict, Attributes: []*commonpb.KeyValue{
			num(semconv.LockOwnerPID, int64(1000+owner)), str(semconv.LockOwnerMode, semconv.ModeWrite.String()), num(semconv.LockOwnerStart, 0), num(semconv.LockOwnerLen, 0),
			num(semconv.LockOwnerLockerID, int64(owner)), str(semconv.LockOwnerClass, semconv.OwnerLocker.String()), str(semconv.LockOwnerSource, "getlk"), str(semconv.Node, "vm")}}
		with := func(attrs []*commonpb.KeyValue, more ...*commonpb.KeyValue) []*commonpb.KeyValue {
			return append(append([]*commonpb.KeyValue{}, attrs...), more...)
		}
		acqHex := fmt.Sprintf("%x", acqID)
		final := mk(acqID, semconv.SpanAcquire, begin, grant, with(acqAttrs, str(semconv.LockOutcome, semconv.OutcomeGranted.String()), num(semconv.LockTries, 1)), ev)
		holdFinal := mk(holdID, semconv.SpanHold, grant, grant+step-1000, with(lock, str(semconv.LockAcquireID, acqHex), str(semconv.LockHoldEnd, semconv.HoldRelease.String())))
		for _, o := range []op{
			{t: begin, span: final, start: with(acqAttrs, str(semconv.LockOutcome, semconv.OutcomeWaiting.String())), kind: 0},
			{t: begin + 5000, span: final, ev: ev, kind: 1},
			{t: grant, span: final, kind: 2},
			{t: grant, span: holdFinal, start: with(lock, str(semconv.LockAcquireID, acqHex), str(semconv.LockHoldEnd, semconv.HoldOpen.String())), kind: 0},
			{t: grant + step - 1000, span: holdFinal, kind: 2},
		} {
			if err := queue(p, o); err != nil {
				return err
			}
		}
	}
	for _, p := range procs {
		if err := flush(p); err != nil {
			return err
		}
		p.span.EndTimeUnixNano = uint64(end)
		if err := line(p.res, p.span); err != nil {
			return err
		}
	}
	root.EndTimeUnixNano = uint64(end)
	root.Attributes = append(root.Attributes, str(semconv.RunEndReason, "done"))
	if err := line(ctl, root); err != nil {
		return err
	}
	return w.Close()
}
