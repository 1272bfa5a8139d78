// Package proto is the wire protocol between the lockprobe controller and its lockers and
// observers. Both sides import it; it knows nothing of ZeroMQ. A message is one frame: a fixed
// header (magic, protocol version, kind, sender's sequence number) and a payload. Control
// payloads are JSON; span payloads are OTLP protobuf (an ExportTraceServiceRequest), so spans
// travel in the format every collector already reads.
//
// Header: magic "LP", version, kind, sequence number (8 bytes), backlog (4 bytes), big-endian.
package proto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lockprobe/lockprobe/semconv"
)

// Version is the protocol version; a hello with another version is refused. Version 2 added
// the backlog to the header.
const Version = 2

// magic opens every frame so that a stray connection is recognised at once.
var magic = [2]byte{'L', 'P'}

// HeaderSize is the size of the fixed frame header.
const HeaderSize = 2 + 1 + 1 + 8 + 4

// MaxPayload bounds a frame's payload; a larger one is rejected rather than allocated.
const MaxPayload = 64 << 20

// Kind is a message type.
type Kind uint8

// Message kinds. L→C: locker to controller; C→L: controller to locker.
const (
	KindHello    Kind = iota + 1 // L→C: who I am
	KindWelcome                  // C→L: accepted; trace context and settings
	KindPing                     // L→C: clock probe
	KindPong                     // C→L: clock probe answer
	KindReady                    // L→C: clock measured, ready for commands
	KindCommands                 // C→L: the queue and the scenario start instant
	KindAck                      // both: a message was received (by its kind and seq)
	KindSpans                    // L→C: OTLP spans, partial or final
	KindIdle                     // L→C: the queue is empty
	KindSnapReq                  // C→L: report your state now
	KindSnapshot                 // L→C: state
	KindStop                     // C→L: release, flush, exit
	KindBye                      // L→C: last message, with the last sequence number
	KindBeat                     // C→L: heartbeat (the controller is alive)
	KindRefuse                   // C→L: hello refused (version, token, id)
	kindEnd
)

var kindNames = [...]string{
	KindHello: "hello", KindWelcome: "welcome", KindPing: "ping", KindPong: "pong",
	KindReady: "ready", KindCommands: "commands", KindAck: "ack", KindSpans: "spans",
	KindIdle: "idle", KindSnapReq: "snapreq", KindSnapshot: "snapshot", KindStop: "stop",
	KindBye: "bye", KindBeat: "beat", KindRefuse: "refuse",
}

func (k Kind) String() string {
	if k > 0 && k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Coalesces says two messages of the kind, both still waiting to be sent, say no more than one:
// a beat only says the controller is there. A sender may keep one of them waiting.
func (k Kind) Coalesces() bool { return k == KindBeat }

// FrameKind is the kind in an encoded frame's header, or 0 for a frame too short to have one.
func FrameKind(frame []byte) Kind {
	if len(frame) < HeaderSize {
		return 0
	}
	return Kind(frame[3])
}

// Message is a decoded frame. Exactly one payload field is set, the one Kind names.
type Message struct {
	Kind Kind
	Seq  uint64 // the sender's sequence number, from 1; gaps mean lost messages
	// Backlog is how many records the sender still had queued behind this message when it sent
	// it: a sender that dies without its goodbye leaves at least the last one's backlog unsent.
	Backlog uint32

	Hello    *Hello
	Welcome  *Welcome
	Ping     *Ping
	Pong     *Pong
	Ready    *Ready
	Commands *Commands
	Ack      *Ack
	// SpansRaw is a KindSpans payload as it travels: an OTLP ExportTraceServiceRequest's
	// protobuf encoding. The controller writes these bytes to the trace file as they are and
	// decodes them once, into its own model (decoding them into OTLP messages as well was a
	// third of its work at 100 lockers). No generated OTLP type appears here: they would bring
	// gRPC and the protobuf registry into every locker, whose start-up pays their package inits.
	SpansRaw []byte
	Idle     *Idle
	SnapReq  *SnapReq
	Snapshot *Snapshot
	Stop     *Stop
	Bye      *Bye
	Beat     *Beat
	Refuse   *Refuse
}

// Hello introduces a locker or an observer.
type Hello struct {
	Version  int      `json:"version"`
	LockerID int      `json:"locker_id"`
	Role     string   `json:"role"` // "locker" | "observer"
	PID      int      `json:"pid"`
	Host     string   `json:"host"`
	Node     string   `json:"node"`
	Token    string   `json:"token"`
	Files    []string `json:"files"`
}

// Welcome accepts a hello.
type Welcome struct {
	TraceID      [16]byte      `json:"trace_id"`
	ParentSpanID [8]byte       `json:"parent_span_id"`
	Poll         time.Duration `json:"poll"`      // watcher / observer interval
	Heartbeat    time.Duration `json:"heartbeat"` // the locker exits after 5 missed beats
	Kind         semconv.Kind  `json:"kind"`      // default lock kind
	Style        semconv.Style `json:"style"`     // default acquire style
	Tries        int           `json:"tries"`     // default poll tries
	Interval     time.Duration `json:"interval"`  // default poll interval
	// SameClock says the locker runs on the controller's own host, so both read one clock:
	// the locker stamps with offset 0 and no uncertainty, which no measurement could beat.
	SameClock bool `json:"same_clock"`
	// Spin is how long before an instant the locker stops sleeping and spins. The controller
	// sets 0 when its host has more lockers than cores: spinners would hold the cores that the
	// other lockers need to wake up.
	Spin time.Duration `json:"spin"`
	// KeepPriority says the lock thread keeps the process's priority instead of asking for a
	// higher one (run -keep-priority: a node whose other work must not be ranked below ours).
	KeepPriority bool `json:"keep_priority,omitempty"`
}

// Ping is a clock probe; T1 is the locker's send instant (unix ns, its own clock).
type Ping struct {
	T1 int64 `json:"t1"`
}

// Pong answers a ping with the controller's instant TC.
type Pong struct {
	T1 int64 `json:"t1"`
	TC int64 `json:"tc"`
}

// Ready says the locker measured its clock and waits for commands.
type Ready struct {
	Offset      int64 `json:"offset_ns"` // controller − locker
	Uncertainty int64 `json:"uncertainty_ns"`
	// TID is the thread that makes every lock call. File systems that take the caller's id from
	// FUSE (GlusterFS) may name a holder by this thread id instead of its pid.
	TID int `json:"tid"`
}

// Peer names another locker so that conflict owners can be mapped on the spot.
type Peer struct {
	LockerID int    `json:"locker_id"`
	Node     string `json:"node"`
	PID      int    `json:"pid"`
	TID      int    `json:"tid,omitempty"` // its lock thread
}

// Commands is a locker's whole queue.
type Commands struct {
	Start time.Time `json:"start"` // scenario start, controller clock
	Queue []Command `json:"queue"`
	Peers []Peer    `json:"peers"`
	// End is when the run ends at the latest (its timeout), controller clock. A locker that
	// hears nothing from the controller keeps running its queue until then, plus a grace: a
	// node cut off by a partition loses nothing when the link returns, and a controller that is
	// gone for good is not waited for past the run. Zero: no such promise.
	End time.Time `json:"end"`
	// Instants are the run's scheduled instants, every locker's `@` commands, distinct, in
	// order, controller clock (at most MaxInstants): every member keeps its own work (sending,
	// an observer's polling) out of a short window around each, so that nothing of lockprobe's
	// runs on the cores while lockers fire.
	Instants []time.Time `json:"instants,omitempty"`
}

// MaxInstants bounds Commands.Instants.
const MaxInstants = 1 << 16

// Ack acknowledges the message of the given kind and sequence number.
type Ack struct {
	Kind Kind   `json:"kind"`
	Seq  uint64 `json:"seq"`
}

// Idle says the queue ran empty.
type Idle struct {
	Executed int `json:"executed"`
}

// SnapReq asks for a snapshot. The run is over: the locker starts no further command, so that
// the snapshot shows the state at the end and nothing happens after it.
type SnapReq struct {
	Reason string `json:"reason"`
	At     int64  `json:"at"` // the run's end instant (unix ns, controller clock)
}

// Snapshot is a locker's state at one moment.
type Snapshot struct {
	At       int64    `json:"at"` // unix ns, controller clock
	PID      int      `json:"pid"`
	TID      int      `json:"tid"`
	State    string   `json:"state"`
	Wchan    string   `json:"wchan"`
	Stack    []string `json:"stack"`
	Inflight string   `json:"inflight"` // the attempt in flight, if any
	Executed int      `json:"executed"`
	Holds    int      `json:"holds"`
}

// Stop asks the locker to release, flush and exit.
type Stop struct {
	Reason string `json:"reason"`
	// At is the instant the run ended (unix ns, controller clock): attempts still waiting end
	// `blocked` and holds end `run-end` at that instant, the same for every locker.
	At int64 `json:"at"`
}

// Bye is a locker's last message; its frame's sequence number is the last one the locker sent,
// and the controller acks it before the locker closes its socket.
type Bye struct {
	// Dropped counts records the locker made but could not queue (its outbox stayed full):
	// lost, as a gap in the sequence numbers would be.
	Dropped uint64 `json:"dropped,omitempty"`
}

// Beat is the controller's heartbeat.
type Beat struct{}

// Refuse says why a hello was refused.
type Refuse struct {
	Reason string `json:"reason"`
}

// Encode renders m as one frame.
func Encode(m *Message) ([]byte, error) {
	var payload []byte
	var err error
	switch m.Kind {
	case KindSpans:
		if m.SpansRaw == nil {
			return nil, errors.New("encode spans: nil payload")
		}
		payload = m.SpansRaw
	default:
		v := m.payload()
		if v == nil {
			return nil, fmt.Errorf("encode %s: nil payload", m.Kind)
		}
		payload, err = json.Marshal(v)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.Kind, err)
	}
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("encode %s: payload of %d bytes exceeds %d", m.Kind, len(payload), MaxPayload)
	}
	return append(header(m, len(payload)), payload...), nil
}

// header returns m's frame header with room for a payload of n bytes after it.
func header(m *Message, n int) []byte {
	frame := make([]byte, HeaderSize, HeaderSize+n)
	frame[0], frame[1] = magic[0], magic[1]
	frame[2] = Version
	frame[3] = byte(m.Kind)
	binary.BigEndian.PutUint64(frame[4:], m.Seq)
	binary.BigEndian.PutUint32(frame[12:], m.Backlog)
	return frame
}

// CommandsEncoder encodes the Commands messages of members that share all but their queue: the
// start, the end, the instants and the peer table, which it encodes once. At 1000 lockers the
// table is 56 KB of JSON, and encoding it a thousand times took the controller's loop seconds on
// a host its lockers kept busy.
type CommandsEncoder struct {
	head, tail []byte // the shared payload before and after the queue's value
}

// queueNull is where the queue's value goes in a Commands payload encoded without one. The
// fields before it (the start, an RFC 3339 string) cannot contain it.
var queueNull = []byte(`"queue":null`)

// NewCommandsEncoder takes what the messages share; its Queue is ignored.
func NewCommandsEncoder(shared Commands) (*CommandsEncoder, error) {
	shared.Queue = nil
	b, err := json.Marshal(&shared)
	if err != nil {
		return nil, fmt.Errorf("encode commands: %w", err)
	}
	i := bytes.Index(b, queueNull)
	if i < 0 {
		return nil, errors.New("encode commands: no queue field")
	}
	at := i + len(`"queue":`)
	return &CommandsEncoder{head: b[:at], tail: b[at+len("null"):]}, nil
}

// Encode renders the Commands message (sequence number 0) that carries queue: the frame Encode
// makes of it, byte for byte.
func (e *CommandsEncoder) Encode(queue []Command) ([]byte, error) {
	q, err := json.Marshal(queue)
	if err != nil {
		return nil, fmt.Errorf("encode commands: %w", err)
	}
	n := len(e.head) + len(q) + len(e.tail)
	if n > MaxPayload {
		return nil, fmt.Errorf("encode commands: payload of %d bytes exceeds %d", n, MaxPayload)
	}
	frame := header(&Message{Kind: KindCommands}, n)
	return append(append(append(frame, e.head...), q...), e.tail...), nil
}

// payload returns the set payload field of a control message, or nil.
func (m *Message) payload() any {
	switch m.Kind {
	case KindHello:
		return nilIf(m.Hello)
	case KindWelcome:
		return nilIf(m.Welcome)
	case KindPing:
		return nilIf(m.Ping)
	case KindPong:
		return nilIf(m.Pong)
	case KindReady:
		return nilIf(m.Ready)
	case KindCommands:
		return nilIf(m.Commands)
	case KindAck:
		return nilIf(m.Ack)
	case KindIdle:
		return nilIf(m.Idle)
	case KindSnapReq:
		return nilIf(m.SnapReq)
	case KindSnapshot:
		return nilIf(m.Snapshot)
	case KindStop:
		return nilIf(m.Stop)
	case KindBye:
		return nilIf(m.Bye)
	case KindBeat:
		return nilIf(m.Beat)
	case KindRefuse:
		return nilIf(m.Refuse)
	}
	return nil
}

func nilIf[T any](p *T) any {
	if p == nil {
		return nil
	}
	return p
}

// Decode parses one frame. It rejects a bad magic, another protocol version, an unknown kind,
// an oversized or malformed payload, and a payload that does not validate. A spans payload is
// checked down to its spans' ids (SpansRaw), not decoded: its reader decodes it.
func Decode(frame []byte) (*Message, error) {
	if len(frame) < HeaderSize {
		return nil, fmt.Errorf("decode: frame of %d bytes is shorter than the %d-byte header", len(frame), HeaderSize)
	}
	if frame[0] != magic[0] || frame[1] != magic[1] {
		return nil, errors.New("decode: bad magic")
	}
	if frame[2] != Version {
		return nil, fmt.Errorf("decode: protocol version %d, want %d", frame[2], Version)
	}
	kind := Kind(frame[3])
	if kind == 0 || kind >= kindEnd {
		return nil, fmt.Errorf("decode: unknown message kind %d", frame[3])
	}
	payload := frame[HeaderSize:]
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("decode %s: payload of %d bytes exceeds %d", kind, len(payload), MaxPayload)
	}
	m := &Message{Kind: kind, Seq: binary.BigEndian.Uint64(frame[4:]), Backlog: binary.BigEndian.Uint32(frame[12:])}
	var target any
	switch kind {
	case KindSpans:
		if err := validateSpansRaw(payload); err != nil {
			return nil, err
		}
		m.SpansRaw = bytes.Clone(payload)
		return m, nil
	case KindHello:
		m.Hello = &Hello{}
		target = m.Hello
	case KindWelcome:
		m.Welcome = &Welcome{}
		target = m.Welcome
	case KindPing:
		m.Ping = &Ping{}
		target = m.Ping
	case KindPong:
		m.Pong = &Pong{}
		target = m.Pong
	case KindReady:
		m.Ready = &Ready{}
		target = m.Ready
	case KindCommands:
		m.Commands = &Commands{}
		target = m.Commands
	case KindAck:
		m.Ack = &Ack{}
		target = m.Ack
	case KindIdle:
		m.Idle = &Idle{}
		target = m.Idle
	case KindSnapReq:
		m.SnapReq = &SnapReq{}
		target = m.SnapReq
	case KindSnapshot:
		m.Snapshot = &Snapshot{}
		target = m.Snapshot
	case KindStop:
		m.Stop = &Stop{}
		target = m.Stop
	case KindBye:
		m.Bye = &Bye{}
		target = m.Bye
	case KindBeat:
		m.Beat = &Beat{}
		target = m.Beat
	case KindRefuse:
		m.Refuse = &Refuse{}
		target = m.Refuse
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(target); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	// Not dec.More: it reports false for a stray '}' or ']' after the value.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode %s: trailing data after the payload", kind)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	return m, nil
}

func (m *Message) validate() error {
	switch m.Kind {
	case KindHello:
		h := m.Hello
		if h.Role != "locker" && h.Role != "observer" {
			return fmt.Errorf("role %q is not locker or observer", h.Role)
		}
		if h.PID <= 0 {
			return fmt.Errorf("pid %d", h.PID)
		}
	case KindCommands:
		if len(m.Commands.Instants) > MaxInstants {
			return fmt.Errorf("%d instants, more than %d", len(m.Commands.Instants), MaxInstants)
		}
		for i := range m.Commands.Queue {
			if err := m.Commands.Queue[i].Validate(); err != nil {
				return fmt.Errorf("command %d: %w", i, err)
			}
		}
	case KindAck:
		if m.Ack.Kind == 0 || m.Ack.Kind >= kindEnd {
			return fmt.Errorf("ack of unknown kind %d", m.Ack.Kind)
		}
	}
	return nil
}

// validateSpansRaw checks what the controller relies on without decoding the whole request:
// it is well-formed protobuf down to the spans, and every span has ids of the right size. The
// OTLP field numbers: request.resource_spans 1, resource_spans.scope_spans 2,
// scope_spans.spans 2, span.trace_id 1, span_id 2, parent_span_id 4.
func validateSpansRaw(b []byte) error {
	err := eachBytes(b, 1, func(rs []byte) error {
		return eachBytes(rs, 2, func(ss []byte) error {
			return eachBytes(ss, 2, func(span []byte) error {
				var trace, id, parent int
				var name []byte
				err := eachField(span, func(num protowire.Number, v []byte) error {
					switch num {
					case 1:
						trace = len(v)
					case 2:
						id = len(v)
					case 4:
						parent = len(v)
					case 5:
						name = v
					}
					return nil
				})
				if err != nil {
					return err
				}
				if trace != 16 || id != 8 {
					return fmt.Errorf("span %q has a trace id of %d bytes and a span id of %d", name, trace, id)
				}
				if parent != 0 && parent != 8 {
					return fmt.Errorf("span %q has a parent id of %d bytes", name, parent)
				}
				return nil
			})
		})
	})
	if err != nil {
		return fmt.Errorf("decode spans: %w", err)
	}
	return nil
}

// eachBytes calls fn with the value of every length-delimited field num of message b.
func eachBytes(b []byte, num protowire.Number, fn func([]byte) error) error {
	return eachField(b, func(n protowire.Number, v []byte) error {
		if n == num {
			return fn(v)
		}
		return nil
	})
}

// eachField walks the fields of message b, calling fn with each length-delimited one (v is nil
// for fields of the other wire types).
func eachField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return protowire.ParseError(k)
		}
		b = b[k:]
		var v []byte
		if typ == protowire.BytesType {
			v, k = protowire.ConsumeBytes(b)
		} else {
			k = protowire.ConsumeFieldValue(num, typ, b)
		}
		if k < 0 {
			return protowire.ParseError(k)
		}
		b = b[k:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

// EnvStartGOMAXPROCS, set in a member's environment, says that its controller started it with
// one P (GOMAXPROCS=1) for start-up only: the member takes the runtime's default once its queue
// has come. Without it the member keeps the GOMAXPROCS it was started with (the user's own).
const EnvStartGOMAXPROCS = "LOCKPROBE_START_GOMAXPROCS"
