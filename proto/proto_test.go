package proto

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	pb "google.golang.org/protobuf/proto"
)

var (
	testTraceID = []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	testSpanID  = []byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	testParent  = []byte{0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8}
)

// spansReq is a small but complete OTLP request: resource, scope, span with attributes and an event.
// spansRaw is a KindSpans payload: one span's request, encoded.
func spansRaw(traceID, spanID, parentID []byte) []byte {
	return mustMarshal(spansReq(traceID, spanID, parentID))
}

func mustMarshal(req *coltracepb.ExportTraceServiceRequest) []byte {
	b, err := pb.Marshal(req)
	if err != nil {
		panic(err)
	}
	if b == nil {
		b = []byte{} // an empty request is a payload of no bytes, not none
	}
	return b
}

func spansReq(traceID, spanID, parentID []byte) *coltracepb.ExportTraceServiceRequest {
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "lockprobe")}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "lockprobe"},
			Spans: []*tracepb.Span{{
				TraceId: traceID, SpanId: spanID, ParentSpanId: parentID,
				Name: "lock.acquire", StartTimeUnixNano: 1_700_000_000_000_000_000,
				Attributes: []*commonpb.KeyValue{str("lock.outcome", "waiting"),
					{Key: "lock.start", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 10}}}},
				Events: []*tracepb.Span_Event{{Name: "lock.conflict", TimeUnixNano: 1_700_000_000_000_000_500}},
			}},
		}},
	}}}
}

// sampleMessages holds one message of every kind, with non-zero fields wherever possible.
func sampleMessages() []*Message {
	start := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return []*Message{
		{Kind: KindHello, Seq: 1, Hello: &Hello{Version: Version, LockerID: 2, Role: "locker", PID: 4242,
			Host: "node-a", Node: "a", Token: "s3cret", Files: []string{"/mnt/shared/f", "/mnt/shared/g"}}},
		{Kind: KindHello, Seq: 1, Hello: &Hello{Version: Version, Role: "observer", PID: 1}},
		{Kind: KindWelcome, Seq: 1, Welcome: &Welcome{TraceID: [16]byte(testTraceID), ParentSpanID: [8]byte(testParent),
			Poll: 20 * time.Millisecond, Heartbeat: time.Second, Kind: semconv.KindOFD, Style: semconv.StyleWait, Tries: 3, Interval: 5 * time.Millisecond}},
		{Kind: KindPing, Seq: 2, Ping: &Ping{T1: 1_700_000_000_000_000_001}},
		{Kind: KindPong, Seq: 2, Pong: &Pong{T1: 1_700_000_000_000_000_001, TC: -5}},
		{Kind: KindReady, Seq: 3, Ready: &Ready{Offset: -1234, Uncertainty: 56}},
		{Kind: KindCommands, Seq: 3, Commands: &Commands{Start: start,
			Queue: []Command{
				{Op: OpFile, Line: 1, Text: "file@/mnt/f", Path: "/mnt/f", FD: 1},
				{Op: OpLock, Line: 2, Mode: semconv.ModeWrite, Kind: semconv.KindPOSIX, Style: semconv.StylePoll, Tries: 4, Interval: time.Millisecond,
					Start: 10, Len: 5, FD: 1, HasAt: true, After: 50 * time.Millisecond},
				{Op: OpLock, Mode: semconv.ModeRead, HasAt: true, Abs: start.Add(time.Second)},
				{Op: OpSleep, Duration: 2 * time.Second},
				{Op: OpGetlk, Mode: semconv.ModeRead}, {Op: OpRelease}, {Op: OpReleaseIf}, {Op: OpClose, FD: 63}, {Op: OpStop},
			},
			Peers: []Peer{{LockerID: 1, Node: "a", PID: 10}, {LockerID: 2, Node: "b", PID: 11}}}},
		{Kind: KindAck, Seq: 4, Ack: &Ack{Kind: KindCommands, Seq: 3}},
		{Kind: KindSpans, Seq: 5, Backlog: 17, SpansRaw: spansRaw(testTraceID, testSpanID, testParent)},
		{Kind: KindSpans, Seq: 5, SpansRaw: spansRaw(testTraceID, testSpanID, nil)},
		{Kind: KindSpans, Seq: 5, SpansRaw: mustMarshal(&coltracepb.ExportTraceServiceRequest{})},
		{Kind: KindIdle, Seq: 6, Idle: &Idle{Executed: 9}},
		{Kind: KindSnapReq, Seq: 7, SnapReq: &SnapReq{Reason: "timeout", At: 1_700_000_000_500_000_000}},
		{Kind: KindSnapshot, Seq: 8, Snapshot: &Snapshot{At: 1_700_000_000_000_000_000, PID: 4242, TID: 4243, State: "S",
			Wchan: "locks_lock_inode_wait", Stack: []string{"fcntl_setlk", "do_syscall_64"}, Inflight: "write range=0:0",
			Executed: 3, Holds: 1}},
		{Kind: KindStop, Seq: 9, Stop: &Stop{Reason: "done", At: 1_700_000_001_000_000_000}},
		{Kind: KindBye, Seq: 10, Bye: &Bye{Dropped: 2}},
		{Kind: KindBeat, Seq: 1 << 62, Beat: &Beat{}},
		{Kind: KindRefuse, Seq: 11, Refuse: &Refuse{Reason: "protocol version 2, want 1"}},
	}
}

// equalMessages compares two messages; spans payloads byte for byte, as they travel.
func equalMessages(a, b *Message) bool {
	if a.Kind != b.Kind || a.Seq != b.Seq {
		return false
	}
	if a.Kind == KindSpans {
		return bytes.Equal(a.SpansRaw, b.SpansRaw) && a.Backlog == b.Backlog
	}
	return reflect.DeepEqual(a, b)
}

func TestRoundTripEveryKind(t *testing.T) {
	seen := map[Kind]bool{}
	for _, m := range sampleMessages() {
		t.Run(m.Kind.String(), func(t *testing.T) {
			seen[m.Kind] = true
			frame, err := Encode(m)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if len(frame) < HeaderSize || string(frame[:2]) != "LP" || frame[2] != Version || Kind(frame[3]) != m.Kind {
				t.Fatalf("header % x does not say magic LP, version %d, kind %d", frame[:min(len(frame), HeaderSize)], Version, m.Kind)
			}
			if seq := binary.BigEndian.Uint64(frame[4:12]); seq != m.Seq {
				t.Errorf("header seq %d, want %d", seq, m.Seq)
			}
			if b := binary.BigEndian.Uint32(frame[12:HeaderSize]); b != m.Backlog {
				t.Errorf("header backlog %d, want %d", b, m.Backlog)
			}
			got, err := Decode(frame)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !equalMessages(got, m) {
				t.Errorf("round trip changed the message:\n got %+v\nwant %+v", got, m)
			}
		})
	}
	for k := KindHello; k < kindEnd; k++ {
		if !seen[k] {
			t.Errorf("kind %s has no sample message", k)
		}
	}
}

func TestKindString(t *testing.T) {
	for _, tc := range []struct {
		k    Kind
		want string
	}{
		{KindHello, "hello"}, {KindSnapReq, "snapreq"}, {KindRefuse, "refuse"}, {0, "kind(0)"}, {kindEnd, "kind(16)"}, {255, "kind(255)"},
	} {
		if got := tc.k.String(); got != tc.want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(tc.k), got, tc.want)
		}
	}
}

// frameOf builds a frame by hand so that the tests can send what Encode refuses to write.
func frameOf(version byte, kind Kind, payload string) []byte {
	f := []byte{'L', 'P', version, byte(kind), 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 3}
	return append(f, payload...)
}

func mustEncode(t testing.TB, m *Message) []byte {
	t.Helper()
	f, err := Encode(m)
	if err != nil {
		t.Fatalf("Encode(%s): %v", m.Kind, err)
	}
	return f
}

func commandsFrame(t *testing.T, c Command) []byte {
	return mustEncode(t, &Message{Kind: KindCommands, Commands: &Commands{Queue: []Command{{Op: OpStop}, c}}})
}

// rawCommand is a commands frame holding one command written as JSON, for values no Command can hold.
func rawCommand(cmd string) []byte {
	return frameOf(Version, KindCommands, `{"start":"2025-03-01T12:00:00Z","queue":[`+cmd+`],"peers":null}`)
}

func TestDecodeRejects(t *testing.T) {
	good := mustEncode(t, &Message{Kind: KindPing, Ping: &Ping{T1: 1}})
	badMagic := bytes.Clone(good)
	badMagic[0] = 'X'
	spansFrame := func(traceID, spanID, parentID []byte) []byte {
		return mustEncode(t, &Message{Kind: KindSpans, SpansRaw: spansRaw(traceID, spanID, parentID)})
	}
	tests := []struct {
		name  string
		frame []byte
		want  string // a piece of the error
	}{
		{"empty", nil, "shorter than"},
		{"short frame", good[:HeaderSize-1], "shorter than"},
		{"bad magic", badMagic, "bad magic"},
		{"other version", frameOf(Version+1, KindPing, `{"t1":1}`), "protocol version 3"},
		{"version zero", frameOf(0, KindPing, `{"t1":1}`), "protocol version 0"},
		{"kind zero", frameOf(Version, 0, `{}`), "unknown message kind 0"},
		{"kind past the end", frameOf(Version, kindEnd, `{}`), "unknown message kind 16"},
		{"kind 255", frameOf(Version, 255, `{}`), "unknown message kind 255"},
		{"empty json payload", frameOf(Version, KindPing, ``), "decode ping"},
		{"not json", frameOf(Version, KindPing, `t1=1`), "decode ping"},
		{"unknown json field", frameOf(Version, KindPing, `{"t1":1,"t2":2}`), "unknown field"},
		{"wrong json type", frameOf(Version, KindPing, `{"t1":"one"}`), "decode ping"},
		{"trailing object", frameOf(Version, KindPing, `{"t1":1}{"t1":2}`), "trailing"},
		{"trailing garbage", frameOf(Version, KindPing, `{"t1":1} x`), "trailing"},
		{"trailing brace", frameOf(Version, KindPing, `{"t1":1}}`), "trailing"},
		{"trailing bracket", frameOf(Version, KindPing, `{"t1":1}]`), "trailing"},
		{"hello bad role", frameOf(Version, KindHello, `{"role":"boss","pid":1}`), "role"},
		{"hello no pid", frameOf(Version, KindHello, `{"role":"locker"}`), "pid 0"},
		{"hello negative pid", frameOf(Version, KindHello, `{"role":"locker","pid":-3}`), "pid -3"},
		{"ack of kind zero", frameOf(Version, KindAck, `{"kind":0,"seq":1}`), "ack of unknown kind"},
		{"ack of unknown kind", frameOf(Version, KindAck, `{"kind":16,"seq":1}`), "ack of unknown kind"},
		{"command bad mode", rawCommand(`{"op":2,"mode":"exclusive"}`), `mode "exclusive" is not`},
		{"command no mode", commandsFrame(t, Command{Op: OpLock}), "command 1: lock: mode"},
		{"getlk no mode", commandsFrame(t, Command{Op: OpGetlk}), "getlk: mode"},
		{"command bad kind", rawCommand(`{"op":2,"mode":"read","kind":"lockf"}`), `kind "lockf" is not posix, ofd or flock`},
		{"command bad style", rawCommand(`{"op":2,"mode":"read","style":"spin"}`), `style "spin" is not wait, try or poll`},
		{"command kind as a number", rawCommand(`{"op":2,"mode":"read","kind":1}`), "decode commands"},
		{"command unknown op", commandsFrame(t, Command{Op: 99}), "unknown op 99"},
		{"command op zero", commandsFrame(t, Command{}), "unknown op 0"},
		{"file without path", commandsFrame(t, Command{Op: OpFile}), "empty path"},
		{"negative start", commandsFrame(t, Command{Op: OpRelease, Start: -1}), "out-of-range"},
		{"negative len", commandsFrame(t, Command{Op: OpRelease, Len: -1}), "out-of-range"},
		{"negative fd", commandsFrame(t, Command{Op: OpClose, FD: -1}), "out-of-range"},
		{"fd 64", commandsFrame(t, Command{Op: OpClose, FD: 64}), "out-of-range"},
		{"negative tries", commandsFrame(t, Command{Op: OpLock, Mode: semconv.ModeRead, Tries: -1}), "out-of-range"},
		{"negative interval", commandsFrame(t, Command{Op: OpLock, Mode: semconv.ModeRead, Interval: -1}), "out-of-range"},
		{"negative sleep", commandsFrame(t, Command{Op: OpSleep, Duration: -time.Second}), "out-of-range"},
		{"span id of 3 bytes", spansFrame(testTraceID, []byte{1, 2, 3}, nil), "span id of 3"},
		{"trace id of 8 bytes", spansFrame(testTraceID[:8], testSpanID, nil), "trace id of 8"},
		{"parent id of 16 bytes", spansFrame(testTraceID, testSpanID, testTraceID), "parent id of 16"},
		{"spans not protobuf", frameOf(Version, KindSpans, "\xff\xff\xff"), "decode spans"},
		{"oversized payload", frameOf(Version, KindRefuse, string(make([]byte, MaxPayload+1))), "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.frame)
			if err == nil {
				t.Fatalf("Decode accepted the frame: %+v", m)
			}
			if m != nil {
				t.Errorf("Decode returned a message with its error %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		m    *Message
		want string
	}{
		{"nil control payload", &Message{Kind: KindPing}, "nil payload"},
		{"payload of another kind", &Message{Kind: KindPing, Pong: &Pong{}}, "nil payload"},
		{"nil spans", &Message{Kind: KindSpans}, "nil payload"},
		{"kind zero", &Message{Ping: &Ping{}}, "nil payload"},
		{"unknown kind", &Message{Kind: kindEnd, Ping: &Ping{}}, "nil payload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Encode(tc.m)
			if err == nil {
				t.Fatalf("Encode accepted %+v: % x", tc.m, f)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestEncodeOversized(t *testing.T) {
	if testing.Short() {
		t.Skip("marshals 64 MiB")
	}
	_, err := Encode(&Message{Kind: KindRefuse, Refuse: &Refuse{Reason: strings.Repeat("x", MaxPayload)}})
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("Encode of an oversized payload: err = %v, want one saying it exceeds %d", err, MaxPayload)
	}
}

// A transport may reuse its receive buffer, so a decoded message must not alias the frame:
// neither JSON strings nor the ids of a spans payload.
func TestDecodeDoesNotAliasFrame(t *testing.T) {
	for _, m := range []*Message{
		{Kind: KindStop, Stop: &Stop{Reason: "done"}},
		{Kind: KindSpans, SpansRaw: spansRaw(testTraceID, testSpanID, testParent)},
	} {
		frame := mustEncode(t, m)
		got, err := Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		clear(frame)
		if !equalMessages(got, m) {
			t.Errorf("%s changed when its frame was overwritten: %+v", m.Kind, got)
		}
	}
}

// TestCommandsEncoderMatchesEncode: the shared part encoded once, each queue spliced in, gives
// the frame Encode makes of the whole message, byte for byte, and it decodes to that message.
func TestCommandsEncoderMatchesEncode(t *testing.T) {
	start := time.Unix(1700000000, 123456789).UTC()
	shared := Commands{Start: start, End: start.Add(3 * time.Second), Instants: []time.Time{start, start.Add(time.Second)},
		Peers: []Peer{{LockerID: 0, Node: "vm", PID: 100, TID: 101}, {LockerID: 1, Node: `a "quoted" <node>`, PID: 200}}}
	enc, err := NewCommandsEncoder(shared)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range [][]Command{
		nil,
		{},
		{{Op: OpLock, Mode: semconv.ModeWrite, HasAt: true, After: time.Second}, {Op: OpRelease}},
		{{Op: OpSleep, Duration: time.Hour}},
	} {
		full := shared
		full.Queue = q
		want, err := Encode(&Message{Kind: KindCommands, Commands: &full})
		if err != nil {
			t.Fatal(err)
		}
		got, err := enc.Encode(q)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("queue %v:\n got %s\nwant %s", q, got[HeaderSize:], want[HeaderSize:])
			continue
		}
		m, err := Decode(got)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Commands.Peers) != 2 || len(m.Commands.Queue) != len(q) || !m.Commands.Start.Equal(start) {
			t.Errorf("decoded %+v", m.Commands)
		}
	}
}
