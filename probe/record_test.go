package probe

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
	pb "google.golang.org/protobuf/proto"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

func strKV(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intKV(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// TestEncodeMatchesOTLP: what the sender writes for a batch is the OTLP request the generated
// messages describe — read back with google.golang.org/protobuf, the same spans, attributes,
// events and status: a final record for a span that began and ended in the batch, a partial
// one (end 0, start attributes, the events queued) for one still open.
func TestEncodeMatchesOTLP(t *testing.T) {
	var items []item
	r := newRecorder(func(it item) { items = append(items, it) })
	r.parent = [8]byte{9, 9, 9, 9, 9, 9, 9, 9}
	at := func(ns int64) time.Time { return time.Unix(0, ns) }
	res := []attribute.KeyValue{attribute.String(semconv.ServiceName, "lockprobe"), attribute.Int(semconv.ProcessPID, 42),
		attribute.StringSlice(semconv.FSMountOpts, []string{"rw", "relatime"}), attribute.Int64Slice("x.ints", []int64{1, -2})}
	enc := newEncoder([16]byte{1, 2, 3}, res, "scope")

	att := r.start(semconv.SpanAcquire, at(100), []attribute.KeyValue{
		attribute.String(semconv.LockMode, "write"), attribute.String(semconv.LockOutcome, "waiting"), attribute.Int(semconv.LockStart, 0)})
	att.addEvent(r, semconv.EventConflict, at(150), []attribute.KeyValue{attribute.Int(semconv.LockOwnerPID, 7), attribute.Bool("b", true)}, true)
	att.setAttributes(attribute.String(semconv.LockOutcome, "error"), attribute.Float64("f", 1.5))
	att.setError("EIO")
	att.endAt(r, at(200))
	h := &hold{kind: semconv.KindPOSIX, mode: semconv.ModeWrite, start: 0, end: 10, file: host.FileID{Major: 8, Minor: 1, Inode: 5}, path: "/f", logical: "{file}", acquireID: att.id}
	hs := r.startHold(h, 3, at(300))
	open := r.start(semconv.SpanCommand, at(400), []attribute.KeyValue{attribute.Int(semconv.LockCmdIndex, 1)})
	_ = open

	raw, n := enc.request(items)
	if n != 3 {
		t.Fatalf("%d records, want 3 (one per span)", n)
	}
	got := &coltracepb.ExportTraceServiceRequest{}
	if err := pb.Unmarshal(raw, got); err != nil {
		t.Fatalf("the request does not parse as OTLP: %v", err)
	}
	trace := []byte{1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strKV(semconv.ServiceName, "lockprobe"), intKV(semconv.ProcessPID, 42),
			{Key: semconv.FSMountOpts, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
				{Value: &commonpb.AnyValue_StringValue{StringValue: "rw"}}, {Value: &commonpb.AnyValue_StringValue{StringValue: "relatime"}}}}}}},
			{Key: "x.ints", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
				{Value: &commonpb.AnyValue_IntValue{IntValue: 1}}, {Value: &commonpb.AnyValue_IntValue{IntValue: -2}}}}}}},
		}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "scope"},
			Spans: []*tracepb.Span{
				{TraceId: trace, SpanId: att.id[:], ParentSpanId: r.parent[:], Name: semconv.SpanAcquire, Kind: tracepb.Span_SPAN_KIND_INTERNAL,
					StartTimeUnixNano: 100, EndTimeUnixNano: 200,
					Attributes: []*commonpb.KeyValue{strKV(semconv.LockMode, "write"), strKV(semconv.LockOutcome, "error"), intKV(semconv.LockStart, 0),
						{Key: "f", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1.5}}}},
					Events: []*tracepb.Span_Event{{TimeUnixNano: 150, Name: semconv.EventConflict, Attributes: []*commonpb.KeyValue{intKV(semconv.LockOwnerPID, 7),
						{Key: "b", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}}}}},
					Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "EIO"}},
				{TraceId: trace, SpanId: hs.id[:], ParentSpanId: r.parent[:], Name: semconv.SpanHold, Kind: tracepb.Span_SPAN_KIND_INTERNAL, StartTimeUnixNano: 300,
					Attributes: []*commonpb.KeyValue{intKV(semconv.LockerID, 3), strKV(semconv.LockKind, "posix"), intKV(semconv.LockFD, 0), strKV(semconv.LockMode, "write"),
						intKV(semconv.LockStart, 0), intKV(semconv.LockLen, 10), strKV(semconv.FilePath, "/f"), strKV(semconv.FileLogical, "{file}"), strKV(semconv.FileDev, "8:1"),
						intKV(semconv.FileInode, 5), strKV(semconv.LockAcquireID, spanIDHex(att.id)), strKV(semconv.LockHoldEnd, semconv.HoldOpen.String())}},
				{TraceId: trace, SpanId: open.id[:], ParentSpanId: r.parent[:], Name: semconv.SpanCommand, Kind: tracepb.Span_SPAN_KIND_INTERNAL, StartTimeUnixNano: 400,
					Attributes: []*commonpb.KeyValue{intKV(semconv.LockCmdIndex, 1)}},
			},
		}},
	}}}
	if !pb.Equal(got, want) {
		t.Errorf("the request:\n%v\nwant:\n%v", got, want)
	}
	// The controller's check of a spans payload takes it as it is.
	frame, err := proto.Encode(&proto.Message{Kind: proto.KindSpans, SpansRaw: raw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proto.Decode(frame); err != nil {
		t.Errorf("proto.Decode of the spans message: %v", err)
	}
}

// TestBatchesMergeToOneSpan: a span whose start, events and end fall into different batches
// (a waiter's partial record, the watcher's answers, the grant later) merges in the trace
// reader into the span one batch would have carried.
func TestBatchesMergeToOneSpan(t *testing.T) {
	var items []item
	r := newRecorder(func(it item) { items = append(items, it) })
	enc := newEncoder([16]byte{1}, []attribute.KeyValue{attribute.String(semconv.ServiceName, "lockprobe")}, "scope")
	s := r.start(semconv.SpanAcquire, time.Unix(0, 10), []attribute.KeyValue{attribute.String(semconv.LockOutcome, "waiting"), attribute.Int(semconv.LockerID, 1)})
	first, _ := enc.request(items)
	all := append([]item(nil), items...)
	items = items[:0]
	s.addEvent(r, semconv.EventConflict, time.Unix(0, 20), []attribute.KeyValue{attribute.Int(semconv.LockOwnerPID, 3)}, true)
	second, _ := enc.request(items)
	all = append(all, items...)
	items = items[:0]
	s.setAttributes(attribute.String(semconv.LockOutcome, "granted"))
	s.endAt(r, time.Unix(0, 30))
	third, _ := enc.request(items)
	all = append(all, items...)
	one, _ := enc.request(all)

	split, whole := tracefile.NewMerger(), tracefile.NewMerger()
	for _, b := range [][]byte{first, second, third} {
		if _, err := split.AddEncoded(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := whole.AddEncoded(one); err != nil {
		t.Fatal(err)
	}
	a, b := split.Spans(), whole.Spans()
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("%d and %d spans, want one each", len(a), len(b))
	}
	x, y := a[0], b[0]
	if x.End != 30 || y.End != 30 || x.Attrs.Str(semconv.LockOutcome) != "granted" || y.Attrs.Str(semconv.LockOutcome) != "granted" ||
		len(x.Events) != 1 || len(y.Events) != 1 || x.Attrs.IntOr(semconv.LockerID, -1) != 1 || y.Records != 1 || x.Records != 3 {
		t.Errorf("split into batches: %+v\nin one batch: %+v", x, y)
	}
}

// TestStampCutsEvents: once a waiter's grant is stamped, a watcher's answer is no longer
// recorded (it would describe a waiter that is not waiting any more, after the attempt's end).
func TestStampCutsEvents(t *testing.T) {
	var items []item
	r := newRecorder(func(it item) { items = append(items, it) })
	s := r.start(semconv.SpanAcquire, time.Unix(0, 10), nil)
	clock := int64(20)
	now := func() time.Time { clock++; return time.Unix(0, clock) }
	s.addEventNow(r, semconv.EventConflict, now, nil, true)
	granted := s.stamp(now)
	s.addEventNow(r, semconv.EventConflict, now, nil, true)
	s.endAt(r, granted)
	_, events, _, _, end := s.final()
	if len(events) != 1 || events[0].t >= end || end != granted.UnixNano() {
		t.Errorf("events %+v, end %d: want the one before the grant only", events, end)
	}
	n := 0
	for _, it := range items {
		if it.op == opEvent {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d events queued, want 1", n)
	}
}

// TestCycleSpans: one storm cycle (write style=wait, release) on a real file gives an attempt,
// a hold and a release command whose attributes, made on the sender from what the lock thread
// left, are every attribute those spans carry, with the values of this cycle — read back by
// the trace reader as the controller reads them.
func TestCycleSpans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock-file")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := host.StatFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e, rec := testExecutor(t, path)
	e.l.opts.ID = 7
	e.l.welcome = &proto.Welcome{}
	e.l.thread = &lockThread{}
	e.peers = e.l.peerTable(nil)
	e.queue = []proto.Command{
		{Op: proto.OpFile, Path: path, FD: 0, Line: 2, Text: "all: file@{file}"},
		{Op: proto.OpLock, Mode: semconv.ModeWrite, Style: semconv.StyleWait, Line: 4, Text: "all: write style=wait"},
		{Op: proto.OpRelease, Line: 5, Text: "all: release"},
		{Op: proto.OpLock, Mode: semconv.ModeWrite, Style: semconv.StyleWait, Line: 4, Text: "all: write style=wait"},
		{Op: proto.OpRelease, Line: 5, Text: "all: release"},
	}
	if end := e.run(); end != endQueueEmpty {
		t.Fatalf("queue ended %v", end)
	}
	t.Cleanup(func() { unix.Close(e.slots[0].fd) })
	enc := newEncoder([16]byte{1}, []attribute.KeyValue{attribute.String(semconv.ServiceName, "lockprobe")}, "scope")
	// Two batches: the second cycle's spans take the shared attributes the first one encoded.
	m := tracefile.NewMerger()
	half := len(rec.items) / 2
	for _, items := range [][]item{rec.items[:half], rec.items[half:]} {
		raw, _ := enc.request(items)
		if _, err := m.AddEncoded(raw); err != nil {
			t.Fatal(err)
		}
	}
	dev := fmt.Sprintf("%d:%d", fi.Major, fi.Minor)
	file := map[string]any{semconv.FilePath: path, semconv.FileLogical: "{file}", semconv.FileDev: dev, semconv.FileInode: int64(fi.Inode)}
	var attempts []*tracefile.Span
	byName := map[string][]*tracefile.Span{}
	for _, s := range m.Spans() {
		byName[s.Name] = append(byName[s.Name], s)
		if s.Name == semconv.SpanAcquire {
			attempts = append(attempts, s)
		}
	}
	if len(attempts) != 2 || len(byName[semconv.SpanHold]) != 2 || len(byName[semconv.SpanCommand]) != 3 {
		t.Fatalf("spans %v: want 2 attempts, 2 holds, 3 commands (file, 2 releases)", byName)
	}
	for i, s := range attempts {
		sameAttrs(t, "attempt", s.Attrs, file, map[string]any{semconv.LockerID: int64(7), semconv.LockCmdLine: int64(4),
			semconv.LockCmdText: "all: write style=wait", semconv.LockFD: int64(0), semconv.LockKind: "posix", semconv.LockMode: "write",
			semconv.LockStart: int64(0), semconv.LockLen: int64(0), semconv.LockStyle: "wait", semconv.LockCmdIndex: int64(1 + 2*i),
			semconv.LockOutcome: "granted", semconv.LockErrno: "", semconv.LockTries: int64(1)})
		if s.Open() || s.Records != 1 {
			t.Errorf("attempt %d: open %v, %d records; want ended, one record", i, s.Open(), s.Records)
		}
	}
	for i, s := range byName[semconv.SpanHold] {
		sameAttrs(t, "hold", s.Attrs, file, map[string]any{semconv.LockKind: "posix", semconv.LockMode: "write", semconv.LockStart: int64(0),
			semconv.LockLen: int64(0), semconv.LockFD: int64(0), semconv.LockerID: int64(7), semconv.LockAcquireID: attempts[i].SpanID,
			semconv.LockHoldEnd: "release"})
	}
	releases := 0
	for _, s := range byName[semconv.SpanCommand] {
		if s.Attrs.Str("lock.op") != "release" {
			continue
		}
		sameAttrs(t, "release", s.Attrs, map[string]any{semconv.LockerID: int64(7), semconv.LockCmdLine: int64(5), semconv.LockCmdText: "all: release",
			semconv.LockFD: int64(0), "lock.held": true, semconv.LockKind: "posix", "lock.op": "release", semconv.LockCmdIndex: int64(2 + 2*releases)})
		if s.Open() || s.End < s.Start {
			t.Errorf("release %d: start %d end %d", releases, s.Start, s.End)
		}
		releases++
	}
}

// sameAttrs checks got holds exactly the keys and values of wants, in any order.
func sameAttrs(t *testing.T, what string, got tracefile.Attrs, wants ...map[string]any) {
	t.Helper()
	n := 0
	for _, want := range wants {
		n += len(want)
		for k, w := range want {
			if v, ok := got.Get(k); !ok || v != w {
				t.Errorf("%s: %s = %v (%v), want %v", what, k, v, ok, w)
			}
		}
	}
	if len(got) != n {
		t.Errorf("%s: %d attributes %v, want %d", what, len(got), got, n)
	}
}
