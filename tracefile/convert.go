package tracefile

import (
	"encoding/hex"
	"fmt"
	"io"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	pb "google.golang.org/protobuf/proto"
)

// Records are decoded with the Collector's pdata (its generated protobuf and JSON code) and then
// turned into Spans. A trace repeats the same few strings (keys, names, modes, paths) and its
// lockers' resources in every record: the decoder keeps one copy of each, boxed once, so that a
// trace of 10^6 events is held in memory once and not per record.

const (
	maxInterned  = 1 << 16 // distinct strings and integers kept for reuse
	maxInternLen = 256     // longer strings are not worth a table slot
	maxResources = 1 << 12
)

type decoder struct {
	strs   map[string]string
	boxed  map[string]any
	ints   map[int64]any
	res    map[string]Attrs // a resource's attributes, by their fingerprint
	scopes map[Scope]*Scope
	traces map[pcommon.TraceID]string
	fp     []byte
}

func newDecoder() *decoder {
	return &decoder{strs: map[string]string{}, boxed: map[string]any{}, ints: map[int64]any{},
		res: map[string]Attrs{}, scopes: map[Scope]*Scope{}, traces: map[pcommon.TraceID]string{}}
}

// str returns a shared copy of s.
func (d *decoder) str(s string) string {
	if v, ok := d.strs[s]; ok {
		return v
	}
	if len(d.strs) < maxInterned && len(s) <= maxInternLen {
		d.strs[s] = s
	}
	return s
}

func (d *decoder) boxStr(s string) any {
	if v, ok := d.boxed[s]; ok {
		return v
	}
	var v any = d.str(s)
	if len(d.boxed) < maxInterned && len(s) <= maxInternLen {
		d.boxed[s] = v
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

func (d *decoder) value(v pcommon.Value) any {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return d.boxStr(v.Str())
	case pcommon.ValueTypeInt:
		return d.boxInt(v.Int())
	case pcommon.ValueTypeDouble:
		return v.Double()
	case pcommon.ValueTypeBool:
		return v.Bool()
	case pcommon.ValueTypeBytes:
		return hex.EncodeToString(v.Bytes().AsRaw())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		out := make([]any, s.Len())
		for i := range out {
			out[i] = d.value(s.At(i))
		}
		return out
	case pcommon.ValueTypeMap:
		m := map[string]any{}
		for k, e := range v.Map().All() {
			m[d.str(k)] = d.value(e)
		}
		return m
	}
	return nil
}

func (d *decoder) attrs(m pcommon.Map) Attrs {
	n := m.Len()
	if n == 0 {
		return nil
	}
	out := make(Attrs, 0, n)
	for k, v := range m.All() {
		out.put(d.str(k), d.value(v))
	}
	return out
}

// put appends an attribute; a repeated key (which OTLP forbids, but a file may hold) keeps the
// last value, as a map would.
func (a *Attrs) put(k string, v any) {
	for i := range *a {
		if (*a)[i].Key == k {
			(*a)[i].Value = v
			return
		}
	}
	*a = append(*a, Attr{Key: k, Value: v})
}

// resource returns the attributes of a resource, shared with every earlier resource of the same
// content.
func (d *decoder) resource(m pcommon.Map) Attrs {
	d.fp = d.fp[:0]
	for k, v := range m.All() {
		d.fp = append(d.fp, k...)
		d.fp = append(d.fp, 0, byte(v.Type()))
		d.fp = append(d.fp, v.AsString()...)
		d.fp = append(d.fp, 0)
	}
	if a, ok := d.res[string(d.fp)]; ok {
		return a
	}
	a := d.attrs(m)
	if a == nil {
		a = Attrs{}
	}
	if len(d.res) < maxResources {
		d.res[string(d.fp)] = a
	}
	return a
}

func (d *decoder) scope(s pcommon.InstrumentationScope) *Scope {
	k := Scope{Name: s.Name(), Version: s.Version()}
	if sc, ok := d.scopes[k]; ok {
		return sc
	}
	sc := &Scope{Name: d.str(k.Name), Version: d.str(k.Version)}
	if len(d.scopes) < maxResources {
		d.scopes[k] = sc
	}
	return sc
}

func (d *decoder) traceID(id pcommon.TraceID) string {
	if s, ok := d.traces[id]; ok {
		return s
	}
	s := hex.EncodeToString(id[:])
	if id.IsEmpty() {
		s = ""
	}
	if len(d.traces) < maxResources {
		d.traces[id] = s
	}
	return s
}

func spanIDHex(id pcommon.SpanID) string {
	if id.IsEmpty() {
		return ""
	}
	return hex.EncodeToString(id[:])
}

// key identifies a span across its records.
type key struct {
	trace pcommon.TraceID
	span  pcommon.SpanID
}

// each calls fn with every span record of td, unmerged, and its key. The record is the
// caller's: nobody else holds it.
func (d *decoder) each(td ptrace.Traces, fn func(key, *Span)) {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := d.resource(rs.Resource().Attributes())
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			scope := d.scope(ss.Scope())
			spans := ss.Spans()
			for k := 0; k < spans.Len(); k++ {
				s := spans.At(k)
				rec := &Span{
					TraceID:    d.traceID(s.TraceID()),
					ParentID:   d.str(spanIDHex(s.ParentSpanID())),
					Name:       d.str(s.Name()),
					Kind:       int32(s.Kind()),
					Start:      int64(s.StartTimestamp()),
					End:        int64(s.EndTimestamp()),
					Attrs:      d.attrs(s.Attributes()),
					Resource:   res,
					Scope:      scope,
					Records:    1,
					StatusCode: int32(s.Status().Code()),
					StatusMsg:  s.Status().Message(),
				}
				if evs := s.Events(); evs.Len() > 0 {
					rec.Events = make([]Event, evs.Len())
					for e := range rec.Events {
						ev := evs.At(e)
						rec.Events[e] = Event{Time: int64(ev.Timestamp()), Name: d.str(ev.Name()), Attrs: d.attrs(ev.Attributes())}
					}
				}
				if ls := s.Links(); ls.Len() > 0 {
					rec.Links = make([]Link, ls.Len())
					for l := range rec.Links {
						ln := ls.At(l)
						rec.Links[l] = Link{TraceID: d.traceID(ln.TraceID()), SpanID: spanIDHex(ln.SpanID()), Attrs: d.attrs(ln.Attributes())}
					}
				}
				fn(key{trace: s.TraceID(), span: s.SpanID()}, rec)
			}
		}
	}
}

var (
	protoIn  ptrace.ProtoUnmarshaler
	protoOut ptrace.ProtoMarshaler
	jsonIn   ptrace.JSONUnmarshaler
	jsonOut  ptrace.JSONMarshaler
)

// Encode renders a request as OTLP protobuf, the trace file's record format.
func Encode(req *coltracepb.ExportTraceServiceRequest) ([]byte, error) {
	b, err := pb.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode spans: %w", err)
	}
	return b, nil
}

// Decode parses one OTLP protobuf ExportTraceServiceRequest.
func Decode(b []byte) (*coltracepb.ExportTraceServiceRequest, error) {
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := pb.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("decode spans: %w", err)
	}
	return req, nil
}

// MarshalJSON renders one request in the OTLP JSON encoding (hex ids, lowerCamelCase names) on
// one line, as the Collector's file exporter writes it.
func MarshalJSON(req *coltracepb.ExportTraceServiceRequest) ([]byte, error) {
	b, err := Encode(req)
	if err != nil {
		return nil, err
	}
	td, err := protoIn.UnmarshalTraces(b)
	if err != nil {
		return nil, fmt.Errorf("decode spans: %w", err)
	}
	out, err := jsonOut.MarshalTraces(td)
	if err != nil {
		return nil, fmt.Errorf("encode spans as JSON: %w", err)
	}
	return out, nil
}

// ProtoOfJSON parses one line in the OTLP JSON encoding into OTLP protobuf.
func ProtoOfJSON(line []byte) ([]byte, error) {
	td, err := jsonIn.UnmarshalTraces(line)
	if err != nil {
		return nil, fmt.Errorf("parse spans: %w", err)
	}
	b, err := protoOut.MarshalTraces(td)
	if err != nil {
		return nil, fmt.Errorf("encode spans: %w", err)
	}
	return b, nil
}

// traces renders merged spans as OTLP, grouped by resource and scope in the order their first
// span appears: what a collector receives for them.
func traces(spans []*Span) ptrace.Traces {
	td := ptrace.NewTraces()
	type group struct {
		res    Attrs
		rs     ptrace.ResourceSpans
		scopes map[*Scope]ptrace.ScopeSpans
	}
	var groups []*group
	find := func(s *Span) ptrace.ScopeSpans {
		var g *group
		for _, x := range groups {
			if sameAttrs(x.res, s.Resource) {
				g = x
				break
			}
		}
		if g == nil {
			g = &group{res: s.Resource, rs: td.ResourceSpans().AppendEmpty(), scopes: map[*Scope]ptrace.ScopeSpans{}}
			putAttrs(g.rs.Resource().Attributes(), s.Resource)
			groups = append(groups, g)
		}
		ss, ok := g.scopes[s.Scope]
		if !ok {
			ss = g.rs.ScopeSpans().AppendEmpty()
			if s.Scope != nil {
				ss.Scope().SetName(s.Scope.Name)
				ss.Scope().SetVersion(s.Scope.Version)
			}
			g.scopes[s.Scope] = ss
		}
		return ss
	}
	for _, s := range spans {
		putSpan(find(s).Spans().AppendEmpty(), s)
	}
	return td
}

// ResourceSpans renders merged spans as OTLP messages (see traces).
func ResourceSpans(spans []*Span) ([]*tracepb.ResourceSpans, error) {
	b, err := protoOut.MarshalTraces(traces(spans))
	if err != nil {
		return nil, fmt.Errorf("encode spans: %w", err)
	}
	req, err := Decode(b)
	if err != nil {
		return nil, err
	}
	return req.ResourceSpans, nil
}

// WriteJSON writes merged spans in the OTLP JSON encoding, one ExportTraceServiceRequest per line
// of at most maxLine bytes where it can (a single span longer than that gets a line of its own):
// the lines the Collector's otlpjsonfile receiver reads, whose file reader splits lines longer
// than its max_log_size (1 MiB by default).
func WriteJSON(w io.Writer, spans []*Span, maxLine int) error {
	n := 64
	for len(spans) > 0 {
		n = min(n, len(spans))
		b, err := jsonOut.MarshalTraces(traces(spans[:n]))
		if err != nil {
			return fmt.Errorf("encode spans as JSON: %w", err)
		}
		if len(b) > maxLine && n > 1 {
			n /= 2
			continue
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write JSON: %w", err)
		}
		spans = spans[n:]
		if len(b) < maxLine/4 {
			n *= 2
		}
	}
	return nil
}

// sameAttrs reports whether two resources are the same: the decoder shares equal resources, so
// the slices' identity answers nearly always, the contents otherwise.
func sameAttrs(a, b Attrs) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		v, ok := b.Get(a[i].Key)
		if !ok || fmt.Sprint(v) != fmt.Sprint(a[i].Value) {
			return false
		}
	}
	return true
}

func putSpan(out ptrace.Span, s *Span) {
	out.SetTraceID(traceIDOf(s.TraceID))
	out.SetSpanID(spanIDOf(s.SpanID))
	out.SetParentSpanID(spanIDOf(s.ParentID))
	out.SetName(s.Name)
	out.SetKind(ptrace.SpanKind(s.Kind))
	out.SetStartTimestamp(pcommon.Timestamp(s.Start))
	out.SetEndTimestamp(pcommon.Timestamp(s.End))
	putAttrs(out.Attributes(), s.Attrs)
	for _, e := range s.Events {
		oe := out.Events().AppendEmpty()
		oe.SetTimestamp(pcommon.Timestamp(e.Time))
		oe.SetName(e.Name)
		putAttrs(oe.Attributes(), e.Attrs)
	}
	for _, l := range s.Links {
		ol := out.Links().AppendEmpty()
		ol.SetTraceID(traceIDOf(l.TraceID))
		ol.SetSpanID(spanIDOf(l.SpanID))
		putAttrs(ol.Attributes(), l.Attrs)
	}
	out.Status().SetCode(ptrace.StatusCode(s.StatusCode))
	out.Status().SetMessage(s.StatusMsg)
}

func putAttrs(m pcommon.Map, a Attrs) {
	m.EnsureCapacity(len(a))
	for _, kv := range a {
		putValue(m.PutEmpty(kv.Key), kv.Value)
	}
}

func putValue(v pcommon.Value, x any) {
	switch x := x.(type) {
	case string:
		v.SetStr(x)
	case int64:
		v.SetInt(x)
	case float64:
		v.SetDouble(x)
	case bool:
		v.SetBool(x)
	case []any:
		s := v.SetEmptySlice()
		for _, e := range x {
			putValue(s.AppendEmpty(), e)
		}
	case map[string]any:
		m := v.SetEmptyMap()
		for k, e := range x {
			putValue(m.PutEmpty(k), e)
		}
	}
}

func traceIDOf(s string) pcommon.TraceID {
	var id pcommon.TraceID
	_, _ = hex.Decode(id[:], []byte(s))
	return id
}

func spanIDOf(s string) pcommon.SpanID {
	var id pcommon.SpanID
	_, _ = hex.Decode(id[:], []byte(s))
	return id
}
