package tracefile

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lockprobe/lockprobe/internal/otlpfield"
)

// Reading a trace decodes every record of it, and at 10^6 events that is the cost of `analyze`:
// decoding with pdata first (its generated code builds the whole message, which is then copied
// into Spans) spent most of its time allocating and collecting that intermediate, 29 s of CPU
// for 10^6 events. So records are decoded straight into Spans with protowire, the protobuf
// library's wire-format reader, walking the OTLP messages by their field numbers (internal/otlpfield, the sender's too)
// (opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto,
// all stable). pdata stays the reference: FuzzDecodeMatchesPdata holds this decoder to it.
//
// A trace repeats the same few strings (keys, names, modes, paths) and its lockers' resources in
// every request: the decoder keeps one copy of each, boxed once, and decodes a resource it has
// seen byte for byte only once.

const (
	maxInterned  = 1 << 16 // distinct strings and integers kept for reuse
	maxInternLen = 256     // longer strings are not worth a table slot
	maxResources = 1 << 12 // distinct resources and scopes kept for reuse
	maxDepth     = 32      // nesting of array and kvlist values
)

// The wire type of every field of the messages read, known or not used: a field with another wire
// type is a malformed message (as pdata and google.golang.org/protobuf have it), not one to skip.
const (
	tB = protowire.BytesType
	tV = protowire.VarintType
	t8 = protowire.Fixed64Type
	t4 = protowire.Fixed32Type
)

// fieldTypes holds the wire type of field n at index n (fields 1 to 16); noType for a field the
// message does not have. ResourceSpans' field 1000 is checked on its own.
type fieldTypes [17]protowire.Type

const noType = protowire.Type(-1)

func types(pairs ...any) fieldTypes {
	var t fieldTypes
	for i := range t {
		t[i] = noType
	}
	for i := 0; i < len(pairs); i += 2 {
		t[pairs[i].(int)] = pairs[i+1].(protowire.Type)
	}
	return t
}

var (
	reqFields      = types(1, tB)
	rsFields       = types(1, tB, 2, tB, 3, tB)
	resourceFields = types(1, tB, 2, tV, 3, tB)
	ssFields       = types(1, tB, 2, tB, 3, tB)
	scopeFields    = types(1, tB, 2, tB, 3, tB, 4, tV)
	spanFields     = types(1, tB, 2, tB, 3, tB, 4, tB, 5, tB, 6, tV, 7, t8, 8, t8, 9, tB, 10, tV, 11, tB, 12, tV, 13, tB, 14, tV, 15, tB, 16, t4)
	eventFields    = types(1, t8, 2, tB, 3, tB, 4, tV)
	linkFields     = types(1, tB, 2, tB, 3, tB, 4, tB, 5, tV, 6, t4)
	statusFields   = types(2, tB, 3, tV)
	kvFields       = types(1, tB, 2, tB, 3, tV)
	anyFields      = types(1, tB, 2, tV, 3, tV, 4, t8, 5, tB, 6, tB, 7, tB, 8, tV)
	listFields     = types(1, tB)
)

// nextIn reads one field of a message whose fields are known.
func nextIn(b []byte, known *fieldTypes, msg string) (field, []byte, error) {
	f, rest, err := next(b)
	if err != nil {
		return f, nil, err
	}
	t := noType
	if f.num < protowire.Number(len(known)) {
		t = known[f.num]
	} else if f.num == otlpfield.RSDeprecatedScopeSpans && known == &rsFields {
		t = tB
	}
	if t != noType && t != f.typ {
		return f, nil, fmt.Errorf("%w: %s field %d has wire type %d", errWire, msg, f.num, f.typ)
	}
	return f, rest, nil
}

// The tags of a span's and an event's attributes (length-delimited fields 9 and 3).
const (
	attrTag      = otlpfield.SpanAttrs<<3 | byte(protowire.BytesType)
	eventAttrTag = otlpfield.EventAttrs<<3 | byte(protowire.BytesType)
)

// key identifies a span across its records.
type key struct {
	trace [16]byte
	span  [8]byte
}

type decoder struct {
	kvs map[string]kvEntry // a whole KeyValue message's decoding, by its encoding
	// spanPos (per span name) and eventPos remember, per position in a span's or an event's
	// attributes, the last two KeyValues decoded there: consecutive records of a trace repeat
	// them in the same places, and comparing the bytes with those is cheaper than hashing them
	// for kvs.
	spanPos    []*namedPos
	eventPos   [maxPos]kvPos
	eventNames []string // the first event names met (eventName)
	// plain: the value being decoded is not interned (its place holds a new value each time).
	plain  bool
	strs   map[string]string
	boxed  map[string]any
	ints   map[int64]any
	res    map[string]Attrs // a resource's attributes, by its encoding
	scopes map[string]*Scope
	traces map[[16]byte]string
	parent map[[8]byte]string
	spans  [][]byte // scopeSpans' room for the spans of a scope, reused
	// keyBits gives each of the first 64 attribute keys a trace uses a bit of its own, which
	// a list's seen mask (put) sets as the key is added; once given, a key keeps its bit.
	keyBits map[string]uint64
	// recs, when set, is where records are decoded, their slices (attributes, events and their
	// attributes) reused from the records decoded there before: a reader that lets most records
	// go at once (Stream) then allocates nothing for them. Whoever keeps such a record keeps a
	// clone.
	recs *recArena
}

// recArena holds records for reuse.
type recArena struct {
	recs []*Span
	n    int // in use
}

func (a *recArena) next() *Span {
	if a.n == len(a.recs) {
		a.recs = append(a.recs, &Span{})
	}
	rec := a.recs[a.n]
	a.n++
	*rec = Span{Attrs: rec.Attrs[:0], Events: rec.Events[:0], Records: 1}
	return rec
}

// kvEntry is a KeyValue's decoding and its encoding (the map's key, shared).
type kvEntry struct {
	raw string
	kv  Attr
	bit uint64 // the key's bit (keyBits), or 0
}

// kvPos holds the two KeyValues last seen at one position, the latest first, and how many
// KeyValues in a row were new there. A place whose values are new every time (a hold's
// acquire id, a command's index) is decoded without looking its KeyValue up and without
// interning its value, which would only fill the tables; every 64th is looked up again.
type kvPos struct {
	e      [2]kvEntry
	misses uint8
}

// uniqueAfter is how many new KeyValues in a row make a place one of new values.
const uniqueAfter = 8

// namedPos is the positions of the attributes of the spans of one name, and the most a span of
// that name had (up to maxRoom): the room the next one's attributes get. Spans of one name have
// nearly the same attributes, and a fixed room of 16 cost an attempt (17 attributes) a second
// allocation and copy as it grew, and a third as it was cut to size: a sixth of decoding a
// record.
type namedPos struct {
	name  string
	pos   [maxPos]kvPos
	attrs int
}

// spanName returns the span name b, and sets *np to its positions if it has none yet: the
// names a trace's spans have are a handful, and comparing with those is cheaper than the
// look-up of d.str.
func (d *decoder) spanName(b []byte, np **namedPos) string {
	for _, p := range d.spanPos {
		if string(b) == p.name {
			if *np == nil {
				*np = p
			}
			return p.name
		}
	}
	name := d.str(b)
	if *np == nil {
		*np = d.spanPosOf(name)
	}
	return name
}

// eventName returns the event name b; as for span names, the few a trace has are compared
// before d.str looks one up.
func (d *decoder) eventName(b []byte) string {
	for _, n := range d.eventNames {
		if string(b) == n {
			return n
		}
	}
	name := d.str(b)
	if len(d.eventNames) < 16 {
		d.eventNames = append(d.eventNames, name)
	}
	return name
}

// spanPosOf returns the positions of the attributes of spans of that name.
func (d *decoder) spanPosOf(name string) *namedPos {
	for _, p := range d.spanPos {
		if p.name == name {
			return p
		}
	}
	if len(d.spanPos) >= 16 { // a trace has a handful of span names; more share the last
		return d.spanPos[len(d.spanPos)-1]
	}
	p := &namedPos{name: name}
	d.spanPos = append(d.spanPos, p)
	return p
}

const (
	maxPos  = 24
	maxRoom = 64 // the most attribute room a span gets before it has shown it needs more
)

func newDecoder() *decoder {
	return &decoder{kvs: map[string]kvEntry{}, strs: map[string]string{}, boxed: map[string]any{}, ints: map[int64]any{},
		res: map[string]Attrs{}, scopes: map[string]*Scope{}, traces: map[[16]byte]string{}, parent: map[[8]byte]string{},
		keyBits: map[string]uint64{}}
}

var (
	errWire = errors.New("malformed protobuf")
	// errGroup: the deprecated group wire types, which no OTLP message has. pdata skips them with
	// rules of its own; they are refused here.
	errGroup = fmt.Errorf("%w: group wire type", errWire)
)

// field reads one field's tag and value: v holds the bytes of a length-delimited field, n the
// number of a varint, fixed32 or fixed64 one.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   []byte
	n   uint64
}

func next(b []byte) (field, []byte, error) {
	// The common case first: a one-byte tag of a length-delimited field shorter than 128 bytes
	// (nearly every field of a span record).
	if len(b) >= 2 && b[0] < 0x80 && b[0]&7 == byte(protowire.BytesType) && b[0]>>3 != 0 && b[1] < 0x80 {
		if n := int(b[1]); n <= len(b)-2 {
			return field{num: protowire.Number(b[0] >> 3), typ: protowire.BytesType, v: b[2 : 2+n]}, b[2+n:], nil
		}
	}
	tag, k := varint(b)
	if k < 0 {
		return field{}, nil, errWire
	}
	num, typ := protowire.Number(int32(tag>>3)), protowire.Type(tag&7)
	if num <= 0 {
		return field{}, nil, fmt.Errorf("%w: field number %d", errWire, num)
	}
	b = b[k:]
	f := field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		f.n, k = varint(b)
	case protowire.Fixed64Type:
		f.n, k = protowire.ConsumeFixed64(b)
	case protowire.Fixed32Type:
		var v uint32
		v, k = protowire.ConsumeFixed32(b)
		f.n = uint64(v)
	case protowire.BytesType:
		var n uint64
		if n, k = varint(b); k >= 0 {
			if n > uint64(len(b)-k) {
				return field{}, nil, fmt.Errorf("%w: length %d past the end", errWire, n)
			}
			f.v, k = b[k:k+int(n)], k+int(n)
		}
	case protowire.StartGroupType, protowire.EndGroupType:
		return field{}, nil, errGroup
	default:
		k = -1
	}
	if k < 0 {
		return field{}, nil, errWire
	}
	return f, b[k:], nil
}

// varint reads a base-128 varint as the protobuf decoders of pdata (and gogo before it) do: a
// tenth byte's high bits are dropped rather than refused, which protowire would refuse, so that
// what pdata reads is read here too.
func varint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < 10; i++ {
		if i >= len(b) {
			return 0, -1
		}
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

// want checks a known field's wire type.
func (f field) want(t protowire.Type, msg string) error {
	if f.typ != t {
		return fmt.Errorf("%w: %s field %d has wire type %d", errWire, msg, f.num, f.typ)
	}
	return nil
}

func (d *decoder) str(b []byte) string {
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.strs) < maxInterned && len(b) <= maxInternLen {
		d.strs[s] = s
	}
	return s
}

func (d *decoder) boxStr(b []byte) any {
	if v, ok := d.boxed[string(b)]; ok {
		return v
	}
	var v any = d.str(b)
	if len(d.boxed) < maxInterned && len(b) <= maxInternLen {
		d.boxed[v.(string)] = v
	}
	return v
}

func (d *decoder) boxInt(i int64) any {
	if v, ok := d.ints[i]; ok {
		return v
	}
	var v any = i
	if len(d.ints) < maxInterned {
		d.ints[i] = v
	}
	return v
}

// each calls fn with every span record of one encoded ExportTraceServiceRequest, unmerged, and
// its key. The record is the caller's: nobody else holds it.
func (d *decoder) each(b []byte, fn func(key, *Span)) error {
	for len(b) > 0 {
		f, rest, err := nextIn(b, &reqFields, "request")
		if err != nil {
			return err
		}
		b = rest
		if f.num != otlpfield.ReqResourceSpans {
			continue
		}
		if err := f.want(protowire.BytesType, "request"); err != nil {
			return err
		}
		if err := d.resourceSpans(f.v, fn); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) resourceSpans(b []byte, fn func(key, *Span)) error {
	// The resource may come after the scope spans: find it first.
	var res Attrs
	var scopes, deprecated [][]byte
	for len(b) > 0 {
		f, rest, err := nextIn(b, &rsFields, "resource spans")
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case otlpfield.RSResource:
			if err := f.want(protowire.BytesType, "resource spans"); err != nil {
				return err
			}
			if res, err = d.resource(f.v); err != nil {
				return err
			}
		case otlpfield.RSScopeSpans:
			if err := f.want(protowire.BytesType, "resource spans"); err != nil {
				return err
			}
			scopes = append(scopes, f.v)
		case otlpfield.RSDeprecatedScopeSpans:
			deprecated = append(deprecated, f.v)
		}
	}
	if len(scopes) == 0 {
		scopes = deprecated // instrumentation_library_spans of old OTLP, as pdata migrates them
	}
	if res == nil {
		res = d.res[""]
		if res == nil {
			res = Attrs{}
			d.res[""] = res
		}
	}
	for _, ss := range scopes {
		if err := d.scopeSpans(ss, res, fn); err != nil {
			return err
		}
	}
	return nil
}

// resource decodes a Resource message, once per distinct encoding.
func (d *decoder) resource(b []byte) (Attrs, error) {
	if a, ok := d.res[string(b)]; ok {
		return a, nil
	}
	a := Attrs{}
	for r := b; len(r) > 0; {
		f, rest, err := nextIn(r, &resourceFields, "resource")
		if err != nil {
			return nil, err
		}
		r = rest
		if f.num == otlpfield.ResAttributes {
			if err := f.want(protowire.BytesType, "resource"); err != nil {
				return nil, err
			}
			if err := d.keyValue(f.v, &a, 0, nil, nil); err != nil {
				return nil, err
			}
		}
	}
	if len(d.res) < maxResources {
		d.res[string(b)] = a
	}
	return a, nil
}

func (d *decoder) scopeSpans(b []byte, res Attrs, fn func(key, *Span)) error {
	var scope *Scope
	spans := d.spans[:0] // the room of the scope spans before: a request holds hundreds
	defer func() { clear(spans); d.spans = spans[:0] }()
	for len(b) > 0 {
		f, rest, err := nextIn(b, &ssFields, "scope spans")
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case otlpfield.SSScope:
			if err := f.want(protowire.BytesType, "scope spans"); err != nil {
				return err
			}
			if scope, err = d.scope(f.v); err != nil {
				return err
			}
		case otlpfield.SSSpans:
			if err := f.want(protowire.BytesType, "scope spans"); err != nil {
				return err
			}
			spans = append(spans, f.v)
		}
	}
	if scope == nil {
		var err error
		if scope, err = d.scope(nil); err != nil {
			return err
		}
	}
	for _, s := range spans {
		k, rec, err := d.span(s)
		if err != nil {
			return err
		}
		rec.Resource, rec.Scope = res, scope
		fn(k, rec)
	}
	return nil
}

func (d *decoder) scope(b []byte) (*Scope, error) {
	if s, ok := d.scopes[string(b)]; ok {
		return s, nil
	}
	s := &Scope{}
	for r := b; len(r) > 0; {
		f, rest, err := nextIn(r, &scopeFields, "scope")
		if err != nil {
			return nil, err
		}
		r = rest
		switch f.num {
		case otlpfield.ScopeName, otlpfield.ScopeVersion:
			if err := f.want(protowire.BytesType, "scope"); err != nil {
				return nil, err
			}
			if f.num == otlpfield.ScopeName {
				s.Name = d.str(f.v)
			} else {
				s.Version = d.str(f.v)
			}
		}
	}
	if len(d.scopes) < maxResources {
		d.scopes[string(b)] = s
	}
	return s, nil
}

func (d *decoder) traceID(b []byte) (string, [16]byte, error) {
	var id [16]byte
	switch len(b) {
	case 0:
		return "", id, nil
	case 16:
	default:
		return "", id, fmt.Errorf("%w: trace id of %d bytes", errWire, len(b))
	}
	copy(id[:], b)
	if id == ([16]byte{}) {
		return "", id, nil
	}
	if s, ok := d.traces[id]; ok {
		return s, id, nil
	}
	s := hex.EncodeToString(b)
	if len(d.traces) < maxResources {
		d.traces[id] = s
	}
	return s, id, nil
}

func spanIDOfBytes(b []byte) ([8]byte, error) {
	var id [8]byte
	switch len(b) {
	case 0:
	case 8:
		copy(id[:], b)
	default:
		return id, fmt.Errorf("%w: span id of %d bytes", errWire, len(b))
	}
	return id, nil
}

func spanIDHex(id [8]byte) string {
	if id == ([8]byte{}) {
		return ""
	}
	return hex.EncodeToString(id[:])
}

// parentID returns the hex of a parent span id: parents are few (the lockers' spans, the root),
// so their strings are shared.
func (d *decoder) parentID(id [8]byte) string {
	if s, ok := d.parent[id]; ok {
		return s
	}
	s := spanIDHex(id)
	if len(d.parent) < maxInterned {
		d.parent[id] = s
	}
	return s
}

func (d *decoder) span(b []byte) (key, *Span, error) {
	var k key
	var rec *Span
	if d.recs == nil {
		rec = &Span{Records: 1}
	} else {
		rec = d.recs.next()
	}
	var err error
	var np *namedPos
	var seen uint64 // the keys of rec.Attrs that have a bit (put)
	// attrs returns the positions of the record's attributes, and makes their room.
	attrs := func() *[maxPos]kvPos {
		if np == nil {
			np = d.spanPosOf(rec.Name)
		}
		if rec.Attrs == nil {
			room := np.attrs
			if room == 0 {
				room = 16 // the first of its name
			}
			rec.Attrs = make(Attrs, 0, room)
		}
		return &np.pos
	}
	for len(b) > 0 {
		// An attribute shorter than 128 bytes, most of a record's fields, taken without the
		// general field reader.
		if len(b) >= 2 && b[0] == attrTag && b[1] < 0x80 && int(b[1]) <= len(b)-2 {
			n := int(b[1])
			if err = d.keyValue(b[2:2+n], &rec.Attrs, 0, attrs(), &seen); err != nil {
				return k, nil, err
			}
			b = b[2+n:]
			continue
		}
		var f field
		if f, b, err = nextIn(b, &spanFields, "span"); err != nil {
			return k, nil, err
		}
		switch f.num {
		case otlpfield.SpanTraceID:
			if err = f.want(protowire.BytesType, "span"); err == nil {
				rec.TraceID, k.trace, err = d.traceID(f.v)
			}
		case otlpfield.SpanSpanID:
			if err = f.want(protowire.BytesType, "span"); err == nil {
				k.span, err = spanIDOfBytes(f.v)
			}
		case otlpfield.SpanParentID:
			if err = f.want(protowire.BytesType, "span"); err == nil {
				var p [8]byte
				if p, err = spanIDOfBytes(f.v); err == nil {
					rec.ParentID = d.parentID(p)
				}
			}
		case otlpfield.SpanName:
			if err = f.want(protowire.BytesType, "span"); err == nil {
				rec.Name = d.spanName(f.v, &np)
			}
		case otlpfield.SpanKind:
			if err = f.want(protowire.VarintType, "span"); err == nil {
				rec.Kind = int32(f.n)
			}
		case otlpfield.SpanStart, otlpfield.SpanEnd:
			if err = f.want(protowire.Fixed64Type, "span"); err == nil {
				if f.num == otlpfield.SpanStart {
					rec.Start = int64(f.n)
				} else {
					rec.End = int64(f.n)
				}
			}
		case otlpfield.SpanAttrs:
			if err = f.want(protowire.BytesType, "span"); err == nil {
				err = d.keyValue(f.v, &rec.Attrs, 0, attrs(), &seen)
			}
		case otlpfield.SpanEvents:
			if err = f.want(protowire.BytesType, "span"); err == nil {
				var e Event
				if n := len(rec.Events); d.recs != nil && n < cap(rec.Events) {
					e.Attrs = rec.Events[:n+1][n].Attrs[:0] // the slot's earlier attributes' room
				}
				if err = d.event(f.v, &e); err == nil {
					rec.Events = append(rec.Events, e)
				}
			}
		case otlpfield.SpanLinks:
			if err = f.want(protowire.BytesType, "span"); err == nil {
				var l Link
				if l, err = d.link(f.v); err == nil {
					rec.Links = append(rec.Links, l)
				}
			}
		case otlpfield.SpanStatus:
			if err = f.want(protowire.BytesType, "span"); err == nil {
				err = d.status(f.v, rec)
			}
		}
		if err != nil {
			return k, nil, err
		}
	}
	if np != nil {
		np.attrs = min(max(np.attrs, len(rec.Attrs)), maxRoom)
	}
	if d.recs == nil && len(rec.Attrs) > 0 && cap(rec.Attrs) > len(rec.Attrs)+4 {
		rec.Attrs = append(Attrs(nil), rec.Attrs...) // the span keeps it: no spare room
	}
	return k, rec, nil
}

// event decodes an Event into e, appending its attributes to e.Attrs.
func (d *decoder) event(b []byte, e *Event) error {
	var seen uint64 // the keys of e.Attrs that have a bit (put)
	for len(b) > 0 {
		if len(b) >= 2 && b[0] == eventAttrTag && b[1] < 0x80 && int(b[1]) <= len(b)-2 {
			n := int(b[1])
			if err := d.keyValue(b[2:2+n], &e.Attrs, 0, &d.eventPos, &seen); err != nil {
				return err
			}
			b = b[2+n:]
			continue
		}
		f, rest, err := nextIn(b, &eventFields, "event")
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case otlpfield.EventTime:
			if err := f.want(protowire.Fixed64Type, "event"); err != nil {
				return err
			}
			e.Time = int64(f.n)
		case otlpfield.EventName:
			if err := f.want(protowire.BytesType, "event"); err != nil {
				return err
			}
			e.Name = d.eventName(f.v)
		case otlpfield.EventAttrs:
			if err := f.want(protowire.BytesType, "event"); err != nil {
				return err
			}
			if err := d.keyValue(f.v, &e.Attrs, 0, &d.eventPos, &seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *decoder) link(b []byte) (Link, error) {
	var l Link
	for len(b) > 0 {
		f, rest, err := nextIn(b, &linkFields, "link")
		if err != nil {
			return l, err
		}
		b = rest
		switch f.num {
		case otlpfield.LinkTraceID:
			if err := f.want(protowire.BytesType, "link"); err != nil {
				return l, err
			}
			if l.TraceID, _, err = d.traceID(f.v); err != nil {
				return l, err
			}
		case otlpfield.LinkSpanID:
			if err := f.want(protowire.BytesType, "link"); err != nil {
				return l, err
			}
			id, err := spanIDOfBytes(f.v)
			if err != nil {
				return l, err
			}
			l.SpanID = spanIDHex(id)
		case otlpfield.LinkAttrs:
			if err := f.want(protowire.BytesType, "link"); err != nil {
				return l, err
			}
			if err := d.keyValue(f.v, &l.Attrs, 0, nil, nil); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

func (d *decoder) status(b []byte, rec *Span) error {
	for len(b) > 0 {
		f, rest, err := nextIn(b, &statusFields, "status")
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case otlpfield.StatusMessage:
			if err := f.want(protowire.BytesType, "status"); err != nil {
				return err
			}
			rec.StatusMsg = d.str(f.v)
		case otlpfield.StatusCode:
			if err := f.want(protowire.VarintType, "status"); err != nil {
				return err
			}
			rec.StatusCode = int32(f.n)
		}
	}
	return nil
}

// maxKVLen bounds the KeyValue encodings kept whole: a lock's attributes (kind, mode, range,
// path, locker id, command index...) repeat byte for byte across a trace's records.
const maxKVLen = 128

// keyValue decodes one KeyValue into a; a repeated key keeps the last value, as pdata's map
// does not (it keeps both) but every reader of one does. A KeyValue seen before byte for byte
// is taken whole from d.kvs: one map look-up instead of walking two messages and interning
// the key and the value (most of the time of reading a trace). pos, when given, is where the
// attributes of this kind of list (a span's, an event's) were seen by position.
func (d *decoder) keyValue(b []byte, a *Attrs, depth int, pos *[maxPos]kvPos, seen *uint64) error {
	var at *kvPos
	lookUp := len(b) <= maxKVLen
	if pos != nil && len(*a) < maxPos {
		at = &pos[len(*a)]
		// Comparisons, not a switch on string(b): a switch with cases that are not constants
		// made the string, an allocation per attribute (a tenth of decoding a record).
		if e := &at.e[0]; string(b) == e.raw {
			at.misses = 0
			put(a, e.kv, e.bit, seen)
			return nil
		}
		if string(b) == at.e[1].raw {
			at.misses = 0
			at.e[0], at.e[1] = at.e[1], at.e[0]
			put(a, at.e[0].kv, at.e[0].bit, seen)
			return nil
		}
		if at.misses < 255 {
			at.misses++
		} else {
			at.misses = uniqueAfter
		}
		if at.misses > uniqueAfter && at.misses%64 != 0 {
			lookUp = false
			d.plain = true
			defer func() { d.plain = false }()
		}
	}
	if lookUp {
		if e, ok := d.kvs[string(b)]; ok {
			put(a, e.kv, e.bit, seen)
			if at != nil {
				at.e[0], at.e[1], at.misses = e, at.e[0], 0
			}
			return nil
		}
	}
	kb := b
	var k string
	var v any
	for len(b) > 0 {
		f, rest, err := nextIn(b, &kvFields, "key-value")
		if err != nil {
			return err
		}
		b = rest
		switch f.num {
		case otlpfield.KVKey:
			if err := f.want(protowire.BytesType, "key-value"); err != nil {
				return err
			}
			k = d.str(f.v)
		case otlpfield.KVValue:
			if err := f.want(protowire.BytesType, "key-value"); err != nil {
				return err
			}
			if v, err = d.anyValue(f.v, depth); err != nil {
				return err
			}
		}
	}
	bit := d.keyBit(k)
	kv := Attr{Key: k, Value: v}
	put(a, kv, bit, seen) // a repeated key (which OTLP forbids, but a file may hold) keeps its last value
	if lookUp && len(d.kvs) < maxInterned {
		switch v.(type) {
		case string, int64, bool, float64, nil: // shared values that nobody changes
			e := kvEntry{raw: string(kb), kv: kv, bit: bit}
			d.kvs[e.raw] = e
			if at != nil {
				at.e[0], at.e[1] = e, at.e[0]
			}
		}
	}
	return nil
}

// keyBit returns k's bit, giving it one if it has none and one is left.
func (d *decoder) keyBit(k string) uint64 {
	if bit, ok := d.keyBits[k]; ok {
		return bit
	}
	if len(d.keyBits) >= 64 {
		return 0
	}
	bit := uint64(1) << len(d.keyBits)
	d.keyBits[k] = bit
	return bit
}

// put adds kv to a, replacing an earlier value of its key. seen, when given, has the bits
// (keyBit) of the keys a holds: a key with a bit not in it is appended without looking through
// a, where Attrs.Set's scan of a record's attributes for each of them was an eighth of
// decoding it. That holds because a key keeps its bit from the first time the decoder meets
// it: every earlier addition of it to a set its bit.
func put(a *Attrs, kv Attr, bit uint64, seen *uint64) {
	if seen != nil && bit != 0 && *seen&bit == 0 {
		*seen |= bit
		*a = append(*a, kv)
		return
	}
	a.Set(kv.Key, kv.Value)
}

// anyValue decodes an AnyValue; of several set members the last wins, as protobuf's oneof
// rule says.
func (d *decoder) anyValue(b []byte, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: values nested deeper than %d", errWire, maxDepth)
	}
	var v any
	for len(b) > 0 {
		f, rest, err := nextIn(b, &anyFields, "value")
		if err != nil {
			return nil, err
		}
		b = rest
		switch f.num {
		case otlpfield.AnyString:
			if err := f.want(protowire.BytesType, "value"); err != nil {
				return nil, err
			}
			if d.plain {
				v = string(f.v)
			} else {
				v = d.boxStr(f.v)
			}
		case otlpfield.AnyBool:
			if err := f.want(protowire.VarintType, "value"); err != nil {
				return nil, err
			}
			v = f.n != 0
		case otlpfield.AnyInt:
			if err := f.want(protowire.VarintType, "value"); err != nil {
				return nil, err
			}
			if d.plain {
				v = int64(f.n)
			} else {
				v = d.boxInt(int64(f.n))
			}
		case otlpfield.AnyDouble:
			if err := f.want(protowire.Fixed64Type, "value"); err != nil {
				return nil, err
			}
			v = math.Float64frombits(f.n)
		case otlpfield.AnyBytes:
			if err := f.want(protowire.BytesType, "value"); err != nil {
				return nil, err
			}
			v = hex.EncodeToString(f.v)
		case otlpfield.AnyArray:
			if err := f.want(protowire.BytesType, "value"); err != nil {
				return nil, err
			}
			arr := []any{}
			for r := f.v; len(r) > 0; {
				g, rest, err := nextIn(r, &listFields, "array")
				if err != nil {
					return nil, err
				}
				r = rest
				if g.num != otlpfield.ListValues {
					continue
				}
				if err := g.want(protowire.BytesType, "array"); err != nil {
					return nil, err
				}
				e, err := d.anyValue(g.v, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, e)
			}
			v = arr
		case otlpfield.AnyKVList:
			if err := f.want(protowire.BytesType, "value"); err != nil {
				return nil, err
			}
			var kvs Attrs
			for r := f.v; len(r) > 0; {
				g, rest, err := nextIn(r, &listFields, "kvlist")
				if err != nil {
					return nil, err
				}
				r = rest
				if g.num != otlpfield.ListValues {
					continue
				}
				if err := g.want(protowire.BytesType, "kvlist"); err != nil {
					return nil, err
				}
				if err := d.keyValue(g.v, &kvs, depth+1, nil, nil); err != nil {
					return nil, err
				}
			}
			m := make(map[string]any, len(kvs))
			for _, kv := range kvs {
				m[kv.Key] = kv.Value
			}
			v = m
		}
	}
	return v, nil
}
