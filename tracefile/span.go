package tracefile

import (
	"cmp"
	"slices"
)

// Attr is one attribute. Value is a string, int64, float64, bool, []any or map[string]any
// (OTLP's AnyValue kinds; bytes become a hex string).
type Attr struct {
	Key   string
	Value any
}

// Attrs holds a span's, an event's or a resource's attributes in record order, each key once.
// A slice rather than a map: a span has about a dozen attributes, which a slice holds in a
// third of the memory a map takes and searches as fast.
type Attrs []Attr

// Get returns the value of key and whether it is there.
func (a Attrs) Get(key string) (any, bool) {
	for i := range a {
		if a[i].Key == key {
			return a[i].Value, true
		}
	}
	return nil, false
}

// Set sets key to v, replacing its earlier value.
func (a *Attrs) Set(key string, v any) {
	for i := range *a {
		if (*a)[i].Key == key {
			(*a)[i].Value = v
			return
		}
	}
	*a = append(*a, Attr{Key: key, Value: v})
}

// Str returns the string value of key, or "".
func (a Attrs) Str(key string) string {
	v, _ := a.Get(key)
	s, _ := v.(string)
	return s
}

// Int returns the integer value of key and whether it was there as an integer.
func (a Attrs) Int(key string) (int64, bool) {
	v, _ := a.Get(key)
	switch v := v.(type) {
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
	v, _ := a.Get(key)
	arr, _ := v.([]any)
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

// Link is a span link.
type Link struct {
	TraceID, SpanID string // hex
	Attrs           Attrs
}

// Span kinds and status codes, as OTLP numbers them.
const (
	KindUnspecified = 0
	KindInternal    = 1
	StatusUnset     = 0
	StatusOK        = 1
	StatusError     = 2
)

// Span is one span with all its records merged.
type Span struct {
	TraceID    string // hex
	SpanID     string // hex
	ParentID   string // hex, "" for a root
	Name       string
	Kind       int32 // OTLP span kind
	Start      int64 // unix ns, controller clock
	End        int64 // unix ns; 0 = never ended in this file
	Attrs      Attrs
	Events     []Event // in time order
	Links      []Link
	StatusCode int32 // OTLP status code, set by the final record
	StatusMsg  string
	Resource   Attrs  // shared by the spans of one process: do not change it
	Scope      *Scope // the instrumentation scope, shared likewise
	Records    int    // how many records were merged
	// Marks belongs to the live analyzer (analysis.Analyzer.Observe): what it has done with
	// the span already, kept in the merged span itself so that it needs no table of spans of
	// its own beside the merger's. Nothing in tracefile reads or sets it.
	Marks uint8
}

// Scope is the instrumentation scope a span's first record came with.
type Scope struct {
	Name, Version string
}

// Open reports whether the span never ended.
func (s *Span) Open() bool { return s.End == 0 }

// Merge folds a later record of the same span into s. This is the one merge rule of lockprobe's
// records, for the trace reader, the live controller and the OTLP export alike:
//   - a final record (end ≠ 0) is never overridden by a partial one (end 0), whenever it
//     arrives: its name, kind, attributes and status stand; a partial record only adds what
//     the final one lacks;
//   - otherwise the later record's attributes win, and a non-empty name or a set kind replaces
//     the earlier one;
//   - events are united (same name and instant = the same event) and kept in time order; links
//     are united (same trace and span id);
//   - the earliest start and the final end win; the first parent and resource stay.
func (s *Span) Merge(rec *Span) { s.merge(rec, false) }

// merge is Merge; owned says that nobody else holds rec, so that s may take its slices.
func (s *Span) merge(rec *Span, owned bool) {
	// A final record must not lose to a partial one that arrives after it.
	keep := s.End != 0 && rec.End == 0
	if rec.Name != "" && (!keep || s.Name == "") {
		s.Name = rec.Name
	}
	if rec.Kind != KindUnspecified && (!keep || s.Kind == KindUnspecified) {
		s.Kind = rec.Kind
	}
	if s.ParentID == "" {
		s.ParentID = rec.ParentID
	}
	if s.Start == 0 || (rec.Start != 0 && rec.Start < s.Start) {
		s.Start = rec.Start
	}
	if rec.End != 0 {
		s.End = rec.End
		s.StatusCode, s.StatusMsg = rec.StatusCode, rec.StatusMsg
	}
	switch {
	case len(s.Attrs) == 0 && owned:
		s.Attrs = rec.Attrs
	case owned && !keep && covers(rec.Attrs, s.Attrs):
		s.Attrs = rec.Attrs
	default:
		for _, kv := range rec.Attrs {
			if keep {
				if _, ok := s.Attrs.Get(kv.Key); ok {
					continue
				}
			}
			s.Attrs.Set(kv.Key, kv.Value)
		}
	}
	if s.Resource == nil {
		s.Resource = rec.Resource
	}
	if s.Scope == nil {
		s.Scope = rec.Scope
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
	for _, l := range rec.Links {
		if !slices.ContainsFunc(s.Links, func(h Link) bool { return h.TraceID == l.TraceID && h.SpanID == l.SpanID }) {
			s.Links = append(s.Links, l)
		}
	}
	s.Records++
}

// covers reports whether a holds every key of b.
func covers(a, b Attrs) bool {
	if len(a) < len(b) {
		return false
	}
	for _, kv := range b {
		if _, ok := a.Get(kv.Key); !ok {
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
