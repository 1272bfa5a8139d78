package probe

import (
	"encoding/binary"
	"math"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lockprobe/lockprobe/internal/otlpfield"
)

// The sender's OTLP encoder: a batch of span items becomes one ExportTraceServiceRequest in
// protobuf, written with protowire by the field numbers of the OTLP messages (internal/otlpfield; stable:
// opentelemetry/proto trace/v1, common/v1, resource/v1), the locker's resource and scope
// encoded once. What google.golang.org/protobuf's Marshal of the generated messages would write
// for the same spans is what this writes (TestEncodeMatchesOTLP).

// encoder renders batches of one locker's span items.
type encoder struct {
	traceID  [16]byte
	resource []byte // the encoded Resource message
	scope    []byte // the encoded InstrumentationScope message
	head     []byte // scratch: a request's header
	one      []byte // scratch: one span
	recs     []batchRecord
	index    map[*span]int
	kvs      []attribute.KeyValue // scratch: a record's own and later attributes
	// sharedEnc holds the encoded shared attributes of the spans made on the sender, by key:
	// a storm's thousands of cycles share a few (attrsource.go).
	sharedEnc map[sharedKey][]byte
}

// maxShared bounds sharedEnc: a queue of distinct ranges or lines keeps no more than this.
const maxShared = 1 << 12

// sharedBytes returns the encoded shared attributes of src, encoding them the first time.
func (e *encoder) sharedBytes(src attrSource) []byte {
	k := src.key()
	if b, ok := e.sharedEnc[k]; ok {
		return b
	}
	var b []byte
	for _, kv := range src.shared() {
		b = appendKV(b, otlpfield.SpanAttrs, kv)
	}
	if len(e.sharedEnc) >= maxShared {
		clear(e.sharedEnc)
	}
	e.sharedEnc[k] = b
	return b
}

// batchRecord is what one span contributes to a batch: one record.
type batchRecord struct {
	s      *span
	begun  bool    // its start is in the batch: the partial carries the start attributes
	events []event // events queued in the batch (a partial's)
	ended  bool    // its end is in the batch: one final record
}

func newEncoder(traceID [16]byte, resource []attribute.KeyValue, scope string) *encoder {
	e := &encoder{traceID: traceID, index: map[*span]int{}, sharedEnc: map[sharedKey][]byte{}}
	for _, kv := range resource {
		e.resource = appendKV(e.resource, otlpfield.ResAttributes, kv)
	}
	e.scope = protowire.AppendTag(e.scope, otlpfield.ScopeName, protowire.BytesType)
	e.scope = protowire.AppendString(e.scope, scope)
	return e
}

// request renders the span items of a batch, in the order of each span's first item, as one
// request; it returns how many records it holds.
func (e *encoder) request(items []item) ([]byte, int) {
	req, _, n := e.requestIn(nil, items)
	return req, n
}

// requestIn is request rendered in buf's memory, grown as needed (grown: to keep for the
// next). The sender renders every batch in the same buffer (the wire copies it into its
// frame), and the spans are written in place after room for the request's header, which is
// written last, just before them: a new buffer per batch, and the spans written to a scratch
// buffer and copied after the header, were fresh memory every time, faulted in page by page on
// the storm's cores (reuse.go).
func (e *encoder) requestIn(buf []byte, items []item) (req, grown []byte, n int) {
	e.recs = e.recs[:0]
	clear(e.index)
	for _, it := range items {
		i, ok := e.index[it.span]
		if !ok {
			i = len(e.recs)
			e.index[it.span] = i
			e.recs = append(e.recs, batchRecord{s: it.span})
		}
		r := &e.recs[i]
		switch it.op {
		case opStart:
			r.begun = true
		case opEvent:
			r.events = append(r.events, *it.ev)
		case opEnd:
			r.ended = true
		}
	}
	// The header's room: its tags, the resource and the scope, and two lengths of at most
	// ten bytes each.
	room := 4*protowire.SizeTag(otlpfield.ReqResourceSpans) + protowire.SizeBytes(len(e.resource)) + protowire.SizeBytes(len(e.scope)) + 2*binary.MaxVarintLen64
	out := buf[:0]
	out = slices.Grow(out, room)[:room]
	for i := range e.recs {
		e.one = e.appendSpan(e.one[:0], &e.recs[i])
		out = protowire.AppendTag(out, otlpfield.SSSpans, protowire.BytesType)
		out = protowire.AppendBytes(out, e.one)
	}
	spans := len(out) - room
	ssLen := protowire.SizeTag(otlpfield.SSScope) + protowire.SizeBytes(len(e.scope)) + spans
	rsLen := protowire.SizeTag(otlpfield.RSResource) + protowire.SizeBytes(len(e.resource)) + protowire.SizeTag(otlpfield.RSScopeSpans) + protowire.SizeBytes(ssLen)
	h := e.head[:0]
	h = protowire.AppendTag(h, otlpfield.ReqResourceSpans, protowire.BytesType)
	h = protowire.AppendVarint(h, uint64(rsLen))
	h = protowire.AppendTag(h, otlpfield.RSResource, protowire.BytesType)
	h = protowire.AppendBytes(h, e.resource)
	h = protowire.AppendTag(h, otlpfield.RSScopeSpans, protowire.BytesType)
	h = protowire.AppendVarint(h, uint64(ssLen))
	h = protowire.AppendTag(h, otlpfield.SSScope, protowire.BytesType)
	h = protowire.AppendBytes(h, e.scope)
	e.head = h
	start := room - len(h)
	copy(out[start:], h)
	n = len(e.recs)
	for i := range e.recs {
		e.recs[i] = batchRecord{} // let the spans go
	}
	return out[start:], out, n
}

// appendSpan writes one span record: the final one if the span ended, else a partial one (end
// 0) with the start attributes if it began in this batch and the events queued in it.
func (e *encoder) appendSpan(b []byte, r *batchRecord) []byte {
	s := r.s
	b = protowire.AppendTag(b, otlpfield.SpanTraceID, protowire.BytesType)
	b = protowire.AppendBytes(b, e.traceID[:])
	b = protowire.AppendTag(b, otlpfield.SpanSpanID, protowire.BytesType)
	b = protowire.AppendBytes(b, s.id[:])
	if s.parent != ([8]byte{}) {
		b = protowire.AppendTag(b, otlpfield.SpanParentID, protowire.BytesType)
		b = protowire.AppendBytes(b, s.parent[:])
	}
	b = protowire.AppendTag(b, otlpfield.SpanName, protowire.BytesType)
	b = protowire.AppendString(b, s.name)
	b = protowire.AppendTag(b, otlpfield.SpanKind, protowire.VarintType)
	b = protowire.AppendVarint(b, spanKindInternal)
	b = protowire.AppendTag(b, otlpfield.SpanStart, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(s.start))
	var more []attribute.KeyValue
	events := r.events
	var code int32
	var msg string
	if r.ended {
		var end int64
		more, events, code, msg, end = s.later()
		b = protowire.AppendTag(b, otlpfield.SpanEnd, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, uint64(end))
	}
	if r.ended || r.begun {
		// The start attributes with the later ones applied: a key keeps its last value, in the
		// order keys first appeared.
		e.kvs = e.kvs[:0]
		if s.src != nil {
			b = append(b, e.sharedBytes(s.src)...)
			e.kvs = append(s.src.appendOwn(e.kvs), s.src.open()...)
		} else {
			e.kvs = appendSet(e.kvs, s.attrs)
		}
		e.kvs = appendSet(e.kvs, more)
		for _, kv := range e.kvs {
			b = appendKV(b, otlpfield.SpanAttrs, kv)
		}
		clear(e.kvs) // let the values go
	}
	for _, ev := range events {
		b = protowire.AppendTag(b, otlpfield.SpanEvents, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeEvent(ev)))
		b = protowire.AppendTag(b, otlpfield.EventTime, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, uint64(ev.t))
		b = protowire.AppendTag(b, otlpfield.EventName, protowire.BytesType)
		b = protowire.AppendString(b, ev.name)
		for _, kv := range ev.attrs {
			b = appendKV(b, otlpfield.EventAttrs, kv)
		}
	}
	if code != 0 || msg != "" {
		n := 0
		if msg != "" {
			n += protowire.SizeTag(otlpfield.StatusMessage) + protowire.SizeBytes(len(msg))
		}
		if code != 0 {
			n += protowire.SizeTag(otlpfield.StatusCode) + protowire.SizeVarint(uint64(code))
		}
		b = protowire.AppendTag(b, otlpfield.SpanStatus, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		if msg != "" {
			b = protowire.AppendTag(b, otlpfield.StatusMessage, protowire.BytesType)
			b = protowire.AppendString(b, msg)
		}
		if code != 0 {
			b = protowire.AppendTag(b, otlpfield.StatusCode, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(code))
		}
	}
	return b
}

func sizeEvent(ev event) int {
	n := protowire.SizeTag(otlpfield.EventTime) + 8 + protowire.SizeTag(otlpfield.EventName) + protowire.SizeBytes(len(ev.name))
	for _, kv := range ev.attrs {
		n += protowire.SizeTag(otlpfield.EventAttrs) + protowire.SizeBytes(sizeKV(kv))
	}
	return n
}

// appendKV writes kv as a KeyValue message in field f.
func appendKV(b []byte, f protowire.Number, kv attribute.KeyValue) []byte {
	b = protowire.AppendTag(b, f, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeKV(kv)))
	b = protowire.AppendTag(b, otlpfield.KVKey, protowire.BytesType)
	b = protowire.AppendString(b, string(kv.Key))
	b = protowire.AppendTag(b, otlpfield.KVValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeValue(kv.Value)))
	return appendValue(b, kv.Value)
}

func sizeKV(kv attribute.KeyValue) int {
	return protowire.SizeTag(otlpfield.KVKey) + protowire.SizeBytes(len(kv.Key)) + protowire.SizeTag(otlpfield.KVValue) + protowire.SizeBytes(sizeValue(kv.Value))
}

// sizeValue is the size of the AnyValue message of v (without its tag and length). The kinds
// map as the SDK's OTLP transform maps them; a kind it has no AnyValue for is its string.
func sizeValue(v attribute.Value) int {
	switch v.Type() {
	case attribute.BOOL:
		return protowire.SizeTag(otlpfield.AnyBool) + 1
	case attribute.INT64:
		return protowire.SizeTag(otlpfield.AnyInt) + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return protowire.SizeTag(otlpfield.AnyDouble) + 8
	case attribute.STRINGSLICE, attribute.INT64SLICE:
		return protowire.SizeTag(otlpfield.AnyArray) + protowire.SizeBytes(arrayLen(v))
	}
	return protowire.SizeTag(otlpfield.AnyString) + protowire.SizeBytes(len(v.String()))
}

func appendValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, otlpfield.AnyBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, otlpfield.AnyInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, otlpfield.AnyDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRINGSLICE:
		b = protowire.AppendTag(b, otlpfield.AnyArray, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(arrayLen(v)))
		for _, s := range v.AsStringSlice() {
			b = protowire.AppendTag(b, otlpfield.ListValues, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(protowire.SizeTag(otlpfield.AnyString)+protowire.SizeBytes(len(s))))
			b = protowire.AppendTag(b, otlpfield.AnyString, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
		return b
	case attribute.INT64SLICE:
		b = protowire.AppendTag(b, otlpfield.AnyArray, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(arrayLen(v)))
		for _, i := range v.AsInt64Slice() {
			b = protowire.AppendTag(b, otlpfield.ListValues, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(protowire.SizeTag(otlpfield.AnyInt)+protowire.SizeVarint(uint64(i))))
			b = protowire.AppendTag(b, otlpfield.AnyInt, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(i))
		}
		return b
	}
	b = protowire.AppendTag(b, otlpfield.AnyString, protowire.BytesType)
	return protowire.AppendString(b, v.String())
}

// arrayLen is the size of the ArrayValue message of a slice value.
func arrayLen(v attribute.Value) int {
	n := 0
	switch v.Type() {
	case attribute.STRINGSLICE:
		for _, s := range v.AsStringSlice() {
			n += protowire.SizeTag(otlpfield.ListValues) + protowire.SizeBytes(protowire.SizeTag(otlpfield.AnyString)+protowire.SizeBytes(len(s)))
		}
	case attribute.INT64SLICE:
		for _, i := range v.AsInt64Slice() {
			n += protowire.SizeTag(otlpfield.ListValues) + protowire.SizeBytes(protowire.SizeTag(otlpfield.AnyInt)+protowire.SizeVarint(uint64(i)))
		}
	}
	return n
}
