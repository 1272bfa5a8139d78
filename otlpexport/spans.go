package otlpexport

import (
	"sort"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/lockprobe/lockprobe/semconv"
)

// complete copies the ended spans of rs into new messages, so that the
// caller may keep, reuse or write out rs while the copy waits for upload, and
// sets service.name on every copied resource. It returns the copy, the number
// of spans kept and the number of partial spans (end_time_unix_nano == 0)
// left out. When open is not nil, partial records are kept there and folded
// into the span's final record when it comes.
func complete(rs []*tracepb.ResourceSpans, service string, open *openSpans) (out []*tracepb.ResourceSpans, kept, partial int) {
	for _, r := range rs {
		if r == nil {
			continue
		}
		var scopes []*tracepb.ScopeSpans
		for _, ss := range r.GetScopeSpans() {
			if ss == nil {
				continue
			}
			var spans []*tracepb.Span
			for _, s := range ss.GetSpans() {
				if s == nil {
					continue
				}
				if open.mergeHeld(s) {
					continue
				}
				if s.GetEndTimeUnixNano() == 0 {
					partial++
					open.addPartial(s)
					continue
				}
				fin := open.final(s)
				if open.hold(fin, r, ss) {
					continue
				}
				spans = append(spans, fin)
			}
			if len(spans) == 0 {
				continue
			}
			kept += len(spans)
			scopes = append(scopes, &tracepb.ScopeSpans{
				Scope:     proto.CloneOf(ss.GetScope()),
				SchemaUrl: ss.GetSchemaUrl(),
				Spans:     spans,
			})
		}
		if len(scopes) == 0 {
			continue
		}
		res := proto.CloneOf(r.GetResource())
		if res == nil {
			res = &resourcepb.Resource{}
		}
		setString(&res.Attributes, semconv.ServiceName, service)
		out = append(out, &tracepb.ResourceSpans{
			Resource:   res,
			SchemaUrl:  r.GetSchemaUrl(),
			ScopeSpans: scopes,
		})
	}
	return out, kept, partial
}

type spanKey struct{ trace, span string }

func keyOf(s *tracepb.Span) spanKey {
	return spanKey{string(s.GetTraceId()), string(s.GetSpanId())}
}

// openSpans holds the merged partial records of spans that have not ended
// yet, so that a final record that carries less than the partial ones (the
// controller closes spans at the end of a run with little more than an
// outcome) still goes out with the attributes and events seen before. At
// most max spans are held; records past that are not remembered.
//
// It also holds the final records of spans named in Options.Hold until
// takeHeld, with the records that came after them folded in.
type openSpans struct {
	m   map[spanKey]*tracepb.Span
	max int

	holdNames map[string]bool
	held      map[spanKey]*heldSpan
	heldOrder []spanKey
}

// heldSpan is a final record held back, with the resource and scope it came
// with.
type heldSpan struct {
	span     *tracepb.Span
	resource *resourcepb.Resource
	scope    *commonpb.InstrumentationScope
	rsSchema string
	ssSchema string
}

func newOpenSpans(max int, hold []string) *openSpans {
	o := &openSpans{m: map[spanKey]*tracepb.Span{}, max: max, holdNames: map[string]bool{}, held: map[spanKey]*heldSpan{}}
	for _, n := range hold {
		o.holdNames[n] = true
	}
	return o
}

// mergeHeld folds s into the held final record of its span, if there is
// one, and reports whether there was.
func (o *openSpans) mergeHeld(s *tracepb.Span) bool {
	if o == nil {
		return false
	}
	h, ok := o.held[keyOf(s)]
	if !ok {
		return false
	}
	mergeRecord(h.span, s)
	return true
}

// hold keeps fin, a final record the caller owns, when its span's name is
// to be held, and reports whether it did.
func (o *openSpans) hold(fin *tracepb.Span, r *tracepb.ResourceSpans, ss *tracepb.ScopeSpans) bool {
	if o == nil || !o.holdNames[fin.GetName()] {
		return false
	}
	k := keyOf(fin)
	o.held[k] = &heldSpan{span: fin, resource: proto.CloneOf(r.GetResource()), scope: proto.CloneOf(ss.GetScope()),
		rsSchema: r.GetSchemaUrl(), ssSchema: ss.GetSchemaUrl()}
	o.heldOrder = append(o.heldOrder, k)
	return true
}

// takeHeld returns the held records, one ResourceSpans each in the order
// they were held, and stops holding: later records go out as they come.
func (o *openSpans) takeHeld() []*tracepb.ResourceSpans {
	if o == nil {
		return nil
	}
	var out []*tracepb.ResourceSpans
	for _, k := range o.heldOrder {
		h := o.held[k]
		out = append(out, &tracepb.ResourceSpans{Resource: h.resource, SchemaUrl: h.rsSchema,
			ScopeSpans: []*tracepb.ScopeSpans{{Scope: h.scope, SchemaUrl: h.ssSchema, Spans: []*tracepb.Span{h.span}}}})
	}
	o.held, o.heldOrder, o.holdNames = map[spanKey]*heldSpan{}, nil, map[string]bool{}
	return out
}

// addPartial remembers a partial record s (copied).
func (o *openSpans) addPartial(s *tracepb.Span) {
	if o == nil {
		return
	}
	k := keyOf(s)
	if held, ok := o.m[k]; ok {
		mergeRecord(held, s)
		return
	}
	if len(o.m) < o.max {
		o.m[k] = proto.CloneOf(s)
	}
}

// final returns a copy of the final record s with the span's earlier partial
// records folded in, and forgets them.
func (o *openSpans) final(s *tracepb.Span) *tracepb.Span {
	if o == nil {
		return proto.CloneOf(s)
	}
	k := keyOf(s)
	held, ok := o.m[k]
	if !ok {
		return proto.CloneOf(s)
	}
	delete(o.m, k)
	mergeRecord(held, s)
	return held
}

// mergeRecord folds a later record rec of the same span into s, which the
// caller owns, by tracefile.Span.Merge's rules: later attributes win, except
// that a partial record never overrides a final one; events are united (same
// name and instant = same event) and kept in time order; the earliest start
// and a final end win.
func mergeRecord(s, rec *tracepb.Span) {
	keepOld := s.GetEndTimeUnixNano() != 0 && rec.GetEndTimeUnixNano() == 0
	if rec.GetName() != "" && !keepOld {
		s.Name = rec.GetName()
	}
	if len(s.GetParentSpanId()) == 0 {
		s.ParentSpanId = rec.GetParentSpanId()
	}
	if s.GetKind() == tracepb.Span_SPAN_KIND_UNSPECIFIED {
		s.Kind = rec.GetKind()
	}
	if s.GetStartTimeUnixNano() == 0 || (rec.GetStartTimeUnixNano() != 0 && rec.GetStartTimeUnixNano() < s.GetStartTimeUnixNano()) {
		s.StartTimeUnixNano = rec.GetStartTimeUnixNano()
	}
	if rec.GetEndTimeUnixNano() != 0 {
		s.EndTimeUnixNano = rec.GetEndTimeUnixNano()
		if rec.GetStatus() != nil {
			s.Status = proto.CloneOf(rec.GetStatus())
		}
	}
	for _, kv := range rec.GetAttributes() {
		i := attrIndex(s.GetAttributes(), kv.GetKey())
		switch {
		case i < 0:
			s.Attributes = append(s.Attributes, proto.CloneOf(kv))
		case !keepOld:
			s.Attributes[i] = proto.CloneOf(kv)
		}
	}
	for _, e := range rec.GetEvents() {
		if !hasEvent(s.GetEvents(), e) {
			s.Events = append(s.Events, proto.CloneOf(e))
		}
	}
	sort.SliceStable(s.Events, func(i, j int) bool { return s.Events[i].GetTimeUnixNano() < s.Events[j].GetTimeUnixNano() })
	for _, l := range rec.GetLinks() {
		s.Links = append(s.Links, proto.CloneOf(l))
	}
}

func attrIndex(attrs []*commonpb.KeyValue, key string) int {
	for i, kv := range attrs {
		if kv.GetKey() == key {
			return i
		}
	}
	return -1
}

func hasEvent(events []*tracepb.Span_Event, e *tracepb.Span_Event) bool {
	for _, have := range events {
		if have.GetTimeUnixNano() == e.GetTimeUnixNano() && have.GetName() == e.GetName() {
			return true
		}
	}
	return false
}

// setString sets key to a string value in attrs, replacing every earlier
// value of key (a duplicate key would leave the collector to pick one).
func setString(attrs *[]*commonpb.KeyValue, key, value string) {
	kept := (*attrs)[:0]
	for _, kv := range *attrs {
		if kv.GetKey() != key {
			kept = append(kept, kv)
		}
	}
	*attrs = append(kept, &commonpb.KeyValue{
		Key:   key,
		Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: value}},
	})
}

// countSpans counts the spans in rs.
func countSpans(rs []*tracepb.ResourceSpans) int {
	n := 0
	for _, r := range rs {
		for _, ss := range r.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

// takeBatch splits queue after the first entries that together hold at least
// max spans (or all of them). Entries are never split: one entry is what one
// Enqueue call kept of one resource, which stays small.
func takeBatch(queue []*tracepb.ResourceSpans, max int) (batch, rest []*tracepb.ResourceSpans, n int) {
	i := 0
	for i < len(queue) && n < max {
		n += countSpans(queue[i : i+1])
		i++
	}
	return queue[:i:i], queue[i:], n
}
