package tracefile

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// FileName is the trace file's name inside a run's output folder.
const FileName = "trace.jsonl"

// Trace is a whole trace file, its span records merged.
type Trace struct {
	Spans     []*Span // sorted by start, then span id
	Lines     int     // lines read
	Truncated bool    // the last line was unfinished (a crash mid-write); it was skipped
}

// Merger merges span records as they come, for the live controller and for Read.
type Merger struct {
	byID map[string]*Span
	key  []byte
}

// NewMerger returns an empty Merger.
func NewMerger() *Merger { return &Merger{byID: map[string]*Span{}} }

// Add merges the records of rss and returns the merged spans they touched.
func (m *Merger) Add(rss []*tracepb.ResourceSpans) []*Span {
	recs := Records(rss)
	out := make([]*Span, 0, len(recs))
	for _, rec := range recs {
		out = append(out, m.add(rec))
	}
	return out
}

// add merges one record that nobody else holds: its maps may become the merged span's.
func (m *Merger) add(rec *Span) *Span {
	m.key = append(append(m.key[:0], rec.TraceID...), rec.SpanID...)
	if s, ok := m.byID[string(m.key)]; ok {
		s.merge(rec, true)
		return s
	}
	m.byID[string(m.key)] = rec
	return rec
}

// spanID returns the id string of a span already merged, so that its later records share it.
func (m *Merger) spanID(trace, span []byte) (string, bool) {
	m.key = append(append(m.key[:0], trace...), span...)
	if s, ok := m.byID[string(m.key)]; ok {
		return s.SpanID, true
	}
	return "", false
}

// Spans returns all merged spans, sorted by start, then span id.
func (m *Merger) Spans() []*Span {
	out := make([]*Span, 0, len(m.byID))
	for _, s := range m.byID {
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y *Span) int {
		if c := cmp.Compare(x.Start, y.Start); c != 0 {
			return c
		}
		return cmp.Compare(x.SpanID, y.SpanID)
	})
	return out
}

// Open reads a trace file; path may be the file or a run's output folder.
func Open(path string) (*Trace, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer f.Close()
	t, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return t, nil
}

// slowRecords decodes a line the fast path declined, with protojson.
func slowRecords(line []byte) ([]*Span, error) {
	req, err := UnmarshalLine(line)
	if err != nil {
		return nil, err
	}
	return Records(req.ResourceSpans), nil
}

// Read reads a trace. A last line without its newline that does not parse is taken as a write
// cut short by a crash: it is skipped and Truncated is set. Any other bad line is an error.
func Read(r io.Reader) (*Trace, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	m := NewMerger()
	d := newLineDecoder()
	d.spanIDs = m.spanID
	t := &Trace{}
	var long []byte // a line longer than the buffer
	var recs []*Span
	n := 0 // line number in the file, blank lines included, for errors
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(line) > 0 {
			n++
			complete := line[len(line)-1] == '\n'
			line = bytes.TrimSpace(line)
			if len(line) > 0 {
				t.Lines++
				var perr error
				recs, perr = d.decode(line, recs[:0])
				if perr != nil {
					recs, perr = slowRecords(line)
				}
				switch {
				case perr != nil && !complete:
					t.Truncated = true
				case perr != nil:
					return nil, fmt.Errorf("line %d: %w", n, perr)
				default:
					for _, rec := range recs {
						m.add(rec)
					}
				}
				clear(recs)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
	}
	t.Spans = m.Spans()
	return t, nil
}

// The fast path. protojson decodes a trace line through reflection into protobuf messages,
// which Records then turns into spans: on a trace of 10^6 events that is 95% of `analyze`, and
// every line repeats its locker's resource (about half the bytes). lineDecoder reads the subset of
// the OTLP JSON encoding that OTLP exporters and lockprobe write straight into span records, and
// declines (errSlow) anything else — string escapes, null, unknown or repeated fields, bytes
// values, numbers in unusual forms — so that protojson decides those lines, with its errors.
// Resources that repeat byte for byte are decoded once and shared.

// errSlow declines a line: the protojson path decodes it.
var errSlow = errors.New("tracefile: line needs the protojson path")

const (
	maxInterned = 1 << 16 // strings and integers kept for reuse
	maxResource = 1 << 12 // distinct resources kept for reuse
	maxDepth    = 32      // nesting of array and kvlist values
)

type lineDecoder struct {
	strs    map[string]any                          // interned string values, boxed once
	ints    map[int64]any                           // interned integer values, boxed once
	keys    map[string]string                       // interned attribute keys and ids
	res     map[string]Attrs                        // a resource's JSON text → its attributes
	resLens []int                                   // the lengths of the texts in res
	spanIDs func(trace, span []byte) (string, bool) // the id string of a span already merged
	kvs     []kv                                    // scratch for attrs
	b       []byte
	i       int
	out     []*Span
}

func newLineDecoder() *lineDecoder {
	return &lineDecoder{strs: map[string]any{}, ints: map[int64]any{}, keys: map[string]string{}, res: map[string]Attrs{}}
}

// decode appends the span records of one line to out, as Records(UnmarshalLine(line)) would.
func (d *lineDecoder) decode(line []byte, out []*Span) ([]*Span, error) {
	d.b, d.i, d.out = line, 0, out
	seen := 0
	err := d.object(func(key []byte) error {
		if string(key) != "resourceSpans" {
			return errSlow
		}
		return d.once(&seen, 1, func() error { return d.array(d.resourceSpans) })
	})
	if err == nil {
		d.ws()
		if d.i != len(d.b) {
			err = errSlow
		}
	}
	out, d.out, d.b = d.out, nil, nil
	return out, err
}

// once runs fn for a field not seen before in this object; protojson rejects repeated fields.
func (d *lineDecoder) once(seen *int, bit int, fn func() error) error {
	if *seen&bit != 0 {
		return errSlow
	}
	*seen |= bit
	return fn()
}

func (d *lineDecoder) resourceSpans() error {
	var res Attrs
	first := len(d.out)
	seen := 0
	err := d.object(func(key []byte) error {
		switch string(key) {
		case "resource":
			return d.once(&seen, 1, func() (err error) { res, err = d.resource(); return err })
		case "scopeSpans":
			return d.once(&seen, 2, func() error { return d.array(d.scopeSpans) })
		case "schemaUrl":
			return d.once(&seen, 4, d.skipString)
		}
		return errSlow
	})
	// The resource may come after the spans in the object.
	for _, s := range d.out[first:] {
		s.Resource = res
	}
	return err
}

// resource decodes a resource, or reuses the attributes of the same text seen before.
func (d *lineDecoder) resource() (Attrs, error) {
	d.ws()
	rest := d.b[d.i:]
	for _, n := range d.resLens {
		if n <= len(rest) {
			if a, ok := d.res[string(rest[:n])]; ok {
				d.i += n
				return a, nil
			}
		}
	}
	start := d.i
	var a Attrs
	seen := 0
	err := d.object(func(key []byte) error {
		switch string(key) {
		case "attributes":
			return d.once(&seen, 1, func() (err error) { a, err = d.attrs(); return err })
		case "droppedAttributesCount":
			return d.once(&seen, 2, func() error { _, err := d.uint(32); return err })
		}
		return errSlow
	})
	if err != nil {
		return nil, err
	}
	if a == nil {
		a = Attrs{}
	}
	if len(d.res) < maxResource {
		text := string(d.b[start:d.i])
		if _, ok := d.res[text]; !ok {
			d.res[text] = a
			if !slices.Contains(d.resLens, len(text)) {
				d.resLens = append(d.resLens, len(text))
			}
		}
	}
	return a, nil
}

func (d *lineDecoder) scopeSpans() error {
	seen := 0
	return d.object(func(key []byte) error {
		switch string(key) {
		case "scope":
			return d.once(&seen, 1, d.scope)
		case "spans":
			return d.once(&seen, 2, func() error { return d.array(d.span) })
		case "schemaUrl":
			return d.once(&seen, 4, d.skipString)
		}
		return errSlow
	})
}

func (d *lineDecoder) scope() error {
	seen := 0
	return d.object(func(key []byte) error {
		switch string(key) {
		case "name":
			return d.once(&seen, 1, d.skipString)
		case "version":
			return d.once(&seen, 2, d.skipString)
		case "attributes":
			return d.once(&seen, 4, func() error { _, err := d.attrs(); return err })
		case "droppedAttributesCount":
			return d.once(&seen, 8, func() error { _, err := d.uint(32); return err })
		}
		return errSlow
	})
}

var spanKinds = []string{"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
	"SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"}

var statusCodes = []string{"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"}

func (d *lineDecoder) span() error {
	s := &Span{Records: 1}
	var traceID, spanID []byte
	seen := 0
	err := d.object(func(key []byte) error {
		switch string(key) {
		case "traceId":
			return d.once(&seen, 1<<0, func() (err error) { traceID, err = d.id(); return err })
		case "spanId":
			return d.once(&seen, 1<<1, func() (err error) { spanID, err = d.id(); return err })
		case "parentSpanId":
			return d.once(&seen, 1<<2, func() error {
				b, err := d.id()
				s.ParentID = d.intern(b)
				return err
			})
		case "traceState":
			return d.once(&seen, 1<<3, d.skipString)
		case "name":
			return d.once(&seen, 1<<4, func() error {
				b, err := d.str()
				s.Name = d.intern(b)
				return err
			})
		case "kind":
			return d.once(&seen, 1<<5, func() error { return d.enum(spanKinds) })
		case "startTimeUnixNano":
			return d.once(&seen, 1<<6, func() error {
				v, err := d.uint(64)
				s.Start = int64(v)
				return err
			})
		case "endTimeUnixNano":
			return d.once(&seen, 1<<7, func() error {
				v, err := d.uint(64)
				s.End = int64(v)
				return err
			})
		case "attributes":
			return d.once(&seen, 1<<8, func() (err error) { s.Attrs, err = d.attrs(); return err })
		case "droppedAttributesCount":
			return d.once(&seen, 1<<9, func() error { _, err := d.uint(32); return err })
		case "events":
			return d.once(&seen, 1<<10, func() error { return d.array(func() error { return d.event(s) }) })
		case "droppedEventsCount":
			return d.once(&seen, 1<<11, func() error { _, err := d.uint(32); return err })
		case "droppedLinksCount":
			return d.once(&seen, 1<<12, func() error { _, err := d.uint(32); return err })
		case "status":
			return d.once(&seen, 1<<13, d.status)
		case "flags":
			return d.once(&seen, 1<<14, func() error { _, err := d.uint(32); return err })
		}
		return errSlow
	})
	if err != nil {
		return err
	}
	if s.Attrs == nil {
		s.Attrs = Attrs{}
	}
	s.TraceID = d.intern(traceID)
	s.SpanID = ""
	if d.spanIDs != nil {
		if id, ok := d.spanIDs(traceID, spanID); ok {
			s.SpanID = id
		}
	}
	if s.SpanID == "" && len(spanID) > 0 {
		s.SpanID = string(spanID)
	}
	d.out = append(d.out, s)
	return nil
}

func (d *lineDecoder) status() error {
	seen := 0
	return d.object(func(key []byte) error {
		switch string(key) {
		case "message":
			return d.once(&seen, 1, d.skipString)
		case "code":
			return d.once(&seen, 2, func() error { return d.enum(statusCodes) })
		}
		return errSlow
	})
}

func (d *lineDecoder) event(s *Span) error {
	e := Event{}
	seen := 0
	err := d.object(func(key []byte) error {
		switch string(key) {
		case "timeUnixNano":
			return d.once(&seen, 1, func() error {
				v, err := d.uint(64)
				e.Time = int64(v)
				return err
			})
		case "name":
			return d.once(&seen, 2, func() error {
				b, err := d.str()
				e.Name = d.intern(b)
				return err
			})
		case "attributes":
			return d.once(&seen, 4, func() (err error) { e.Attrs, err = d.attrs(); return err })
		case "droppedAttributesCount":
			return d.once(&seen, 8, func() error { _, err := d.uint(32); return err })
		}
		return errSlow
	})
	if e.Attrs == nil {
		e.Attrs = Attrs{}
	}
	s.Events = append(s.Events, e)
	return err
}

// attrs decodes a list of key-value pairs into a map of the exact size; a later pair of the same
// key wins, as in attrsOf.
func (d *lineDecoder) attrs() (Attrs, error) {
	base := len(d.kvs)
	err := d.array(func() error {
		k, v, err := d.keyValue(0)
		d.kvs = append(d.kvs, kv{k, v})
		return err
	})
	a := make(Attrs, len(d.kvs)-base)
	for _, x := range d.kvs[base:] {
		a[x.k] = x.v
	}
	clear(d.kvs[base:])
	d.kvs = d.kvs[:base]
	return a, err
}

type kv struct {
	k string
	v any
}

func (d *lineDecoder) keyValue(depth int) (string, any, error) {
	var k string
	var v any
	seen := 0
	err := d.object(func(key []byte) error {
		switch string(key) {
		case "key":
			return d.once(&seen, 1, func() error {
				b, err := d.str()
				k = d.intern(b)
				return err
			})
		case "value":
			return d.once(&seen, 2, func() (err error) { v, err = d.anyValue(depth); return err })
		}
		return errSlow
	})
	return k, v, err
}

// anyValue decodes an AnyValue as valueOf renders it; an empty one is nil.
func (d *lineDecoder) anyValue(depth int) (any, error) {
	if depth > maxDepth {
		return nil, errSlow
	}
	var v any
	seen := 0
	err := d.object(func(key []byte) error {
		if seen != 0 {
			return errSlow // a oneof set twice: protojson's error
		}
		seen = 1
		switch string(key) {
		case "stringValue":
			b, err := d.str()
			v = d.internValue(b)
			return err
		case "intValue":
			x, err := d.int()
			v = d.boxInt(x)
			return err
		case "boolValue":
			x, err := d.bool()
			v = x
			return err
		case "doubleValue":
			x, err := d.float()
			v = x
			return err
		case "arrayValue":
			return d.list(func(key []byte) error {
				out := []any{}
				err := d.array(func() error {
					x, err := d.anyValue(depth + 1)
					out = append(out, x)
					return err
				})
				v = out
				return err
			})
		case "kvlistValue":
			return d.list(func(key []byte) error {
				out := map[string]any{}
				err := d.array(func() error {
					k, x, err := d.keyValue(depth + 1)
					out[k] = x
					return err
				})
				v = out
				return err
			})
		}
		return errSlow
	})
	return v, err
}

// list decodes {"values": [...]}; an empty object is an empty list.
func (d *lineDecoder) list(values func(key []byte) error) error {
	found := false
	err := d.object(func(key []byte) error {
		if string(key) != "values" || found {
			return errSlow
		}
		found = true
		return values(key)
	})
	if err == nil && !found {
		return values(nil)
	}
	return err
}

func (d *lineDecoder) intern(b []byte) string {
	if s, ok := d.keys[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.keys) < maxInterned && len(s) <= 64 {
		d.keys[s] = s
	}
	return s
}

func (d *lineDecoder) internValue(b []byte) any {
	if v, ok := d.strs[string(b)]; ok {
		return v
	}
	var v any = string(b)
	if len(d.strs) < maxInterned && len(b) <= 64 {
		d.strs[string(b)] = v
	}
	return v
}

func (d *lineDecoder) boxInt(x int64) any {
	if x >= 0 && x < 256 {
		return x // the runtime boxes these without allocating
	}
	if v, ok := d.ints[x]; ok {
		return v
	}
	var v any = x
	if len(d.ints) < maxInterned {
		d.ints[x] = v
	}
	return v
}

// --- JSON syntax ---

func (d *lineDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *lineDecoder) consume(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object decodes {"key": value, ...}, calling field with each key to decode its value.
func (d *lineDecoder) object(field func(key []byte) error) error {
	if !d.consume('{') {
		return errSlow
	}
	if d.consume('}') {
		return nil
	}
	for {
		d.ws()
		key, err := d.str()
		if err != nil {
			return err
		}
		if !d.consume(':') {
			return errSlow
		}
		d.ws()
		if d.i < len(d.b) && d.b[d.i] == 'n' {
			return errSlow // null: protojson's rules for it differ by field
		}
		if err := field(key); err != nil {
			return err
		}
		if d.consume(',') {
			continue
		}
		if d.consume('}') {
			return nil
		}
		return errSlow
	}
}

// array decodes [item, ...].
func (d *lineDecoder) array(item func() error) error {
	if !d.consume('[') {
		return errSlow
	}
	if d.consume(']') {
		return nil
	}
	for {
		d.ws()
		if d.i < len(d.b) && d.b[d.i] == 'n' {
			return errSlow
		}
		if err := item(); err != nil {
			return err
		}
		if d.consume(',') {
			continue
		}
		if d.consume(']') {
			return nil
		}
		return errSlow
	}
}

// str returns the bytes of a string without escapes, valid UTF-8; anything else is declined.
func (d *lineDecoder) str() ([]byte, error) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, errSlow
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.b); j++ {
		c := d.b[j]
		switch {
		case c == '"':
			s := d.b[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, errSlow
			}
			d.i = j + 1
			return s, nil
		case c == '\\' || c < 0x20:
			return nil, errSlow
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, errSlow
}

func (d *lineDecoder) skipString() error {
	_, err := d.str()
	return err
}

// id decodes a hex id as the rewrite to base64 and back would: lower-case hex of even length.
func (d *lineDecoder) id() ([]byte, error) {
	b, err := d.str()
	if err != nil || len(b)%2 != 0 {
		return nil, errSlow
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, errSlow
		}
	}
	return b, nil
}

// digits returns a plain unsigned integer, quoted or not, with no leading zero.
func (d *lineDecoder) digits() ([]byte, error) {
	d.ws()
	quoted := d.i < len(d.b) && d.b[d.i] == '"'
	if quoted {
		d.i++
	}
	start := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	num := d.b[start:d.i]
	if len(num) == 0 || len(num) > 1 && num[0] == '0' {
		return nil, errSlow
	}
	if quoted {
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return nil, errSlow
		}
		d.i++
	} else if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return nil, errSlow
	}
	return num, nil
}

func (d *lineDecoder) uint(bits int) (uint64, error) {
	num, err := d.digits()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(num), 10, bits)
	if err != nil {
		return 0, errSlow
	}
	return v, nil
}

func (d *lineDecoder) int() (int64, error) {
	d.ws()
	neg := false
	if d.i+1 < len(d.b) && d.b[d.i] == '"' && d.b[d.i+1] == '-' {
		return 0, errSlow // rare: protojson decides
	}
	if d.i < len(d.b) && d.b[d.i] == '-' {
		neg = true
		d.i++
		if d.i >= len(d.b) || d.b[d.i] < '1' || d.b[d.i] > '9' {
			return 0, errSlow
		}
	}
	num, err := d.digits()
	if err != nil {
		return 0, err
	}
	u, err := strconv.ParseUint(string(num), 10, 64)
	if err != nil {
		return 0, errSlow
	}
	if neg {
		if u > 1<<63 {
			return 0, errSlow
		}
		return -int64(u), nil
	}
	if u > 1<<63-1 {
		return 0, errSlow
	}
	return int64(u), nil
}

// float decodes a JSON number (not a quoted one) that fits a float64.
func (d *lineDecoder) float() (float64, error) {
	d.ws()
	start := d.i
	j := d.i
	if j < len(d.b) && d.b[j] == '-' {
		j++
	}
	intStart := j
	for j < len(d.b) && '0' <= d.b[j] && d.b[j] <= '9' {
		j++
	}
	if j == intStart || j-intStart > 1 && d.b[intStart] == '0' {
		return 0, errSlow
	}
	if j < len(d.b) && d.b[j] == '.' {
		j++
		k := j
		for j < len(d.b) && '0' <= d.b[j] && d.b[j] <= '9' {
			j++
		}
		if j == k {
			return 0, errSlow
		}
	}
	if j < len(d.b) && (d.b[j] == 'e' || d.b[j] == 'E') {
		j++
		if j < len(d.b) && (d.b[j] == '+' || d.b[j] == '-') {
			j++
		}
		k := j
		for j < len(d.b) && '0' <= d.b[j] && d.b[j] <= '9' {
			j++
		}
		if j == k {
			return 0, errSlow
		}
	}
	v, err := strconv.ParseFloat(string(d.b[start:j]), 64)
	if err != nil {
		return 0, errSlow
	}
	d.i = j
	return v, nil
}

func (d *lineDecoder) bool() (bool, error) {
	d.ws()
	switch {
	case bytes.HasPrefix(d.b[d.i:], []byte("true")):
		d.i += 4
		return true, nil
	case bytes.HasPrefix(d.b[d.i:], []byte("false")):
		d.i += 5
		return false, nil
	}
	return false, errSlow
}

// enum accepts a value's name from names or a plain non-negative number.
func (d *lineDecoder) enum(names []string) error {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '"' {
		b, err := d.str()
		if err != nil || !slices.Contains(names, string(b)) {
			return errSlow
		}
		return nil
	}
	_, err := d.uint(31)
	return err
}
