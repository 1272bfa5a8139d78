package probe

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/lockprobe/lockprobe/semconv"
)

// The locker records its spans itself rather than through the OTel SDK. With the SDK, every
// lock call made spans whose start and end ran the SDK's processors on the lock thread: the
// OTLP transform of the attributes, an id from a locked random source, the partial record's
// rendering, allocation enough for a GC cycle every few hundred calls — about 0.4 ms of CPU per
// traced lock cycle (bench/FINDINGS.md), and the waiting lockers' hand-off paid for it. Here the
// lock thread only stamps and queues: a span is a small value, its start, events and end are
// fixed-size items on the outbox's queue, and the sender renders OTLP protobuf for a whole batch
// after the instant, one record per span per batch (an attempt granted at once is one final
// record, not a partial and a final one) under one resource. The spans, their names,
// attributes, events and status are those the SDK made; record_test.go holds the encoding to
// the OTLP messages.

// opKind says what a queued span item records.
type opKind uint8

const (
	opNone  opKind = iota // a message, not a span item
	opStart               // the span began: a partial record with its start attributes
	opEvent               // an event the controller must see before the span ends
	opEnd                 // the span ended: the final record
)

// event is a span event.
type event struct {
	t     int64 // unix ns, controller clock
	name  string
	attrs []attribute.KeyValue
}

// spanKind and status codes as OTLP numbers them.
const (
	spanKindInternal = 1
	statusError      = 2
)

// span is one span being recorded. What the lock thread sets at the start (id, name, start,
// attrs, hold) never changes afterwards, so the sender reads it without a lock; what comes
// later (more attributes, events, status, end) is guarded by mu.
type span struct {
	id     [8]byte
	parent [8]byte
	name   string
	start  int64 // unix ns, controller clock
	attrs  []attribute.KeyValue
	// src, when set, stands for the start attributes (attrs is nil): the sender makes them
	// from what the lock thread left (an attempt's prepared lock, a hold, a release), which
	// does not change once the span has begun (attrsource.go).
	src attrSource
	// box, when set, is the value holding the span, reused once its final record is rendered
	// (reuse.go).
	box recycler

	mu     sync.Mutex
	more   []attribute.KeyValue // set after the start; a key set again replaces its value
	events []event
	code   int32 // OTLP status code
	msg    string
	end    int64 // 0 while open
	cutoff int64 // events at or after it are not recorded (stamp); 0: none
}

// recorder makes the spans of one locker and queues their items.
type recorder struct {
	put    func(item) // the outbox's queue (a test's list)
	parent [8]byte    // the spans' parent unless told otherwise: the locker span
	base   uint64     // span ids are base + a counter: unique across a run's lockers
	next   atomic.Uint64
	values cycleValues // the lock cycle's values handed back by the sender
}

func newRecorder(put func(item)) *recorder {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &recorder{put: put, base: binary.BigEndian.Uint64(b[:])}
}

func (r *recorder) newID() [8]byte {
	var id [8]byte
	for {
		if v := r.base + r.next.Add(1); v != 0 {
			binary.BigEndian.PutUint64(id[:], v)
			return id
		}
	}
}

// start begins a span at t under the recorder's parent. attrs is kept, not copied: the caller
// must not change it afterwards (a prepared lock's attributes are made for this one span).
func (r *recorder) start(name string, t time.Time, attrs []attribute.KeyValue) *span {
	return r.startUnder(r.parent, name, t, attrs)
}

func (r *recorder) startUnder(parent [8]byte, name string, t time.Time, attrs []attribute.KeyValue) *span {
	s := &span{id: r.newID(), parent: parent, name: name, start: t.UnixNano(), attrs: attrs}
	r.put(item{op: opStart, span: s})
	return s
}

// begin begins s, a span the caller made (within a value of its own: a lock cycle's spans
// are one allocation each with what their attributes are made from), at t; src makes its start
// attributes on the sender.
func (r *recorder) begin(s *span, name string, t time.Time, src attrSource) {
	s.id, s.parent, s.name, s.start, s.src = r.newID(), r.parent, name, t.UnixNano(), src
	r.put(item{op: opStart, span: s})
}

// holdSpan is a hold's span with what its attributes are made from and room for its end's;
// own is room for the hold itself (newHold).
type holdSpan struct {
	sp     span
	src    holdSource
	more   [1]attribute.KeyValue
	own    hold
	values *cycleValues
}

// newHold returns a zero hold within the holdSpan its span will begin in (startHold): one
// value per hold, reused (reuse.go).
func (r *recorder) newHold() *hold {
	hs := r.values.holds.get()
	hs.values = &r.values
	hs.own.box = hs
	return &hs.own
}

// startHold begins the span of h at t; its attributes are the hold's. A hold made by newHold
// has its span's value already.
func (r *recorder) startHold(h *hold, lockerID int, t time.Time) *span {
	hs := h.box
	if hs == nil {
		hs = r.values.holds.get()
		hs.values = &r.values
	}
	hs.src = holdSource{h: h, lockerID: lockerID}
	hs.sp.more = hs.more[:0]
	hs.sp.box = hs
	r.begin(&hs.sp, semconv.SpanHold, t, &hs.src)
	return &hs.sp
}

// cmdSpan is a command's span made on the sender, with what its attributes are made from.
type cmdSpan struct {
	sp     span
	src    cmdSource
	values *cycleValues
}

// newCmdSpan returns a zero cmdSpan, one handed back if there is one (reuse.go).
func (r *recorder) newCmdSpan() *cmdSpan {
	cs := r.values.cmds.get()
	cs.values = &r.values
	return cs
}

// done records cs, a command that began at start and has ended at end, as one item: no partial
// record tells of a span already over.
func (r *recorder) done(cs *cmdSpan, start, end time.Time) {
	s := &cs.sp
	s.id, s.parent, s.name, s.start, s.src, s.end = r.newID(), r.parent, semconv.SpanCommand, start.UnixNano(), &cs.src, max(end.UnixNano(), 1)
	if cs.values != nil {
		s.box = cs
	}
	r.put(item{op: opEnd, span: s})
}

// setAttributes sets attributes of an open span; a key set again keeps its last value.
func (s *span) setAttributes(kvs ...attribute.KeyValue) {
	s.mu.Lock()
	if s.end == 0 {
		s.more = append(s.more, kvs...)
	}
	s.mu.Unlock()
}

// setError marks the span failed with msg (OTLP status error).
func (s *span) setError(msg string) {
	s.mu.Lock()
	if s.end == 0 {
		s.code, s.msg = statusError, msg
	}
	s.mu.Unlock()
}

// addEvent adds an event at t; with send, it is queued at once as a partial record, so that the
// controller sees it before the span ends (a watcher's answer about a waiter).
func (s *span) addEvent(r *recorder, name string, t time.Time, attrs []attribute.KeyValue, send bool) {
	s.addEventNow(r, name, func() time.Time { return t }, attrs, send)
}

// stamp takes the instant now() as the span's coming end: from it on no event is recorded
// (a watcher's answer taken after the grant describes no waiter). It returns the instant.
func (s *span) stamp(now func() time.Time) time.Time {
	s.mu.Lock()
	t := now()
	s.cutoff = t.UnixNano()
	s.mu.Unlock()
	return t
}

// addEventNow is addEvent with the instant taken under the span's lock, so that an event is
// either before the instant stamp took or not recorded.
func (s *span) addEventNow(r *recorder, name string, now func() time.Time, attrs []attribute.KeyValue, send bool) {
	s.mu.Lock()
	ev := event{t: now().UnixNano(), name: name, attrs: attrs}
	if s.end != 0 || s.cutoff != 0 {
		s.mu.Unlock()
		return
	}
	s.events = append(s.events, ev)
	s.mu.Unlock()
	if send {
		r.put(item{op: opEvent, span: s, ev: &ev})
	}
}

// endAt ends the span at t; a span ends once, later ends do nothing.
func (s *span) endAt(r *recorder, t time.Time) {
	s.mu.Lock()
	if s.end != 0 {
		s.mu.Unlock()
		return
	}
	s.end = max(t.UnixNano(), 1)
	s.mu.Unlock()
	r.put(item{op: opEnd, span: s})
}

// startTime is the span's start.
func (s *span) startTime() time.Time { return time.Unix(0, s.start) }

// startAttrs are the attributes the span began with.
func (s *span) startAttrs() []attribute.KeyValue {
	if s.src != nil {
		return append(append(s.src.shared(), s.src.appendOwn(nil)...), s.src.open()...)
	}
	return s.attrs
}

// later returns what came after the start: the attributes set since, every event, the status
// and the end (0 while open).
func (s *span) later() (more []attribute.KeyValue, events []event, code int32, msg string, end int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.more, s.events, s.code, s.msg, s.end
}

// final returns what the final record carries: the start attributes with the later ones
// applied (a key keeps its last value, in the order keys first appeared), every event, the
// status and the end. It is called once the span has ended.
func (s *span) final() (attrs []attribute.KeyValue, events []event, code int32, msg string, end int64) {
	more, events, code, msg, end := s.later()
	base := s.startAttrs()
	attrs = make([]attribute.KeyValue, 0, len(base)+len(more))
	attrs = appendSet(attrs, base)
	attrs = appendSet(attrs, more)
	return attrs, events, code, msg, end
}

// appendSet applies kvs to attrs: a key already there takes the new value in its place.
func appendSet(attrs, kvs []attribute.KeyValue) []attribute.KeyValue {
next:
	for _, kv := range kvs {
		for i := range attrs {
			if attrs[i].Key == kv.Key {
				attrs[i] = kv
				continue next
			}
		}
		attrs = append(attrs, kv)
	}
	return attrs
}
