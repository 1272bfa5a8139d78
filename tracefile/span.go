package tracefile

import (
	"cmp"
	"encoding/hex"
	"slices"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Attrs holds attribute values as Go values: string, int64, float64, bool, []any or
// map[string]any (OTLP's AnyValue kinds; bytes become a hex string).
type Attrs map[string]any

// Str returns the string value of key, or "".
func (a Attrs) Str(key string) string {
	s, _ := a[key].(string)
	return s
}

// Int returns the integer value of key and whether it was there as an integer.
func (a Attrs) Int(key string) (int64, bool) {
	switch v := a[key].(type) {
	case int64:
		return v, true
	case float64:
		return int64(v), true
	}
	return 0, false
}

// IntOr returns the integer value of key, or def when absent.
func (a Attrs) IntOr(key string, def int64) int64 {
	if v, ok := a.Int(key); ok {
		return v
	}
	return def
}

// Strings returns a string-array value of key.
func (a Attrs) Strings(key string) []string {
	arr, _ := a[key].([]any)
	out := make([]string, 0, len(arr))
	for _, v := range arr {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Event is a span event.
type Event struct {
	Time  int64 // unix ns, controller clock
	Name  string
	Attrs Attrs
}

// Span is one span with all its records merged.
type Span struct {
	TraceID  string // hex
	SpanID   string // hex
	ParentID string // hex, "" for a root
	Name     string
	Start    int64 // unix ns, controller clock
	End      int64 // unix ns; 0 = never ended in this file
	Attrs    Attrs
	Events   []Event // in time order
	Resource Attrs   // shared by the spans of one process when read from a file: do not change it
	Records  int     // how many records were merged
}

// Open reports whether the span never ended.
func (s *Span) Open() bool { return s.End == 0 }

// Records flattens OTLP resource spans into span records, one per OTLP span, unmerged.
func Records(rss []*tracepb.ResourceSpans) []*Span {
	var out []*Span
	for _, rs := range rss {
		var res Attrs
		if rs.Resource != nil {
			res = attrsOf(rs.Resource.Attributes)
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := &Span{
					TraceID:  hex.EncodeToString(s.TraceId),
					SpanID:   hex.EncodeToString(s.SpanId),
					ParentID: hex.EncodeToString(s.ParentSpanId),
					Name:     s.Name,
					Start:    int64(s.StartTimeUnixNano),
					End:      int64(s.EndTimeUnixNano),
					Attrs:    attrsOf(s.Attributes),
					Resource: res,
					Records:  1,
				}
				for _, e := range s.Events {
					sp.Events = append(sp.Events, Event{Time: int64(e.TimeUnixNano), Name: e.Name, Attrs: attrsOf(e.Attributes)})
				}
				out = append(out, sp)
			}
		}
	}
	return out
}

// Merge folds a later record of the same span into s: later attributes win, events are united
// (an event already present, same name and instant, is not repeated), a final end time wins.
func (s *Span) Merge(rec *Span) { s.merge(rec, false) }

// merge is Merge; owned says that nobody else holds rec, so that s may take its attribute map
// instead of copying it when that map already holds every key of the merged result.
func (s *Span) merge(rec *Span, owned bool) {
	if rec.Name != "" {
		s.Name = rec.Name
	}
	if s.ParentID == "" {
		s.ParentID = rec.ParentID
	}
	if s.Start == 0 || (rec.Start != 0 && rec.Start < s.Start) {
		s.Start = rec.Start
	}
	if rec.End != 0 {
		s.End = rec.End
	}
	// A final record must not lose to a partial one that arrives after it.
	keep := s.End != 0 && rec.End == 0
	switch {
	case s.Attrs == nil && owned && rec.Attrs != nil && !keep:
		s.Attrs = rec.Attrs
	case owned && !keep && rec.Attrs != nil && covers(rec.Attrs, s.Attrs):
		s.Attrs = rec.Attrs
	default:
		if s.Attrs == nil {
			s.Attrs = Attrs{}
		}
		for k, v := range rec.Attrs {
			if keep {
				if _, ok := s.Attrs[k]; ok {
					continue
				}
			}
			s.Attrs[k] = v
		}
	}
	if s.Resource == nil {
		s.Resource = rec.Resource
	}
	added := false
	for _, e := range rec.Events {
		if !s.hasEvent(e) {
			s.Events = append(s.Events, e)
			added = true
		}
	}
	if added || len(s.Events) > 1 && s.Records == 1 {
		slices.SortStableFunc(s.Events, func(x, y Event) int { return cmp.Compare(x.Time, y.Time) })
	}
	s.Records++
}

// covers reports whether a holds every key of b.
func covers(a, b Attrs) bool {
	if len(a) < len(b) {
		return false
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return false
		}
	}
	return true
}

func (s *Span) hasEvent(e Event) bool {
	for i := range s.Events {
		if s.Events[i].Time == e.Time && s.Events[i].Name == e.Name {
			return true
		}
	}
	return false
}

func attrsOf(kvs []*commonpb.KeyValue) Attrs {
	a := make(Attrs, len(kvs))
	for _, kv := range kvs {
		a[kv.Key] = valueOf(kv.Value)
	}
	return a
}

func valueOf(v *commonpb.AnyValue) any {
	if v == nil {
		return nil
	}
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, valueOf(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		m := map[string]any{}
		for _, kv := range x.KvlistValue.GetValues() {
			m[kv.Key] = valueOf(kv.Value)
		}
		return m
	}
	return nil
}
