package analysis

import (
	"fmt"
	"sort"

	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// Validate checks the invariants every trace written by lockprobe keeps, and returns each break
// it finds (none for a good trace): span ids are unique, every locker id names one locker, no
// span ends before it starts, every lock attribute of a closed set holds a name of that set,
// every hold follows a granted attempt of its own locker, and the
// holds of one locker never conflict with each other in time.
func Validate(t *tracefile.Trace) []error {
	var errs []error
	ids := map[string]bool{}
	lockers := map[int64]string{}
	acquires := map[string]*tracefile.Span{}
	for _, s := range t.Spans {
		if ids[s.SpanID] {
			errs = append(errs, fmt.Errorf("span id %s used twice", s.SpanID))
		}
		ids[s.SpanID] = true
		if s.End != 0 && s.End < s.Start {
			errs = append(errs, fmt.Errorf("span %s (%s) ends before it starts", s.SpanID, s.Name))
		}
		errs = append(errs, checkValues(s)...)
		switch s.Name {
		case semconv.SpanLocker:
			id := attrInt(s, semconv.LockerID, -1)
			if prev, dup := lockers[id]; dup {
				errs = append(errs, fmt.Errorf("locker id %d on spans %s and %s", id, prev, s.SpanID))
			}
			lockers[id] = s.SpanID
		case semconv.SpanAcquire:
			acquires[s.SpanID] = s
		}
	}
	byLocker := map[int64][]*Hold{}
	for _, s := range t.Spans {
		if s.Name != semconv.SpanHold {
			continue
		}
		hv := holdOf(s)
		h := &hv
		byLocker[h.Locker] = append(byLocker[h.Locker], h)
		a, ok := acquires[h.AcquireID]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("hold %s: no attempt %q granted it", h.ID, h.AcquireID))
		case attrInt(a, semconv.LockerID, -1) != h.Locker:
			errs = append(errs, fmt.Errorf("hold %s of locker %d was granted to attempt %s of another locker", h.ID, h.Locker, a.SpanID))
		case a.Attrs.Str(semconv.LockOutcome) != semconv.OutcomeGranted.String():
			errs = append(errs, fmt.Errorf("hold %s follows attempt %s, which ended %q", h.ID, a.SpanID, a.Attrs.Str(semconv.LockOutcome)))
		case a.End == 0 || a.End > h.Begin:
			errs = append(errs, fmt.Errorf("hold %s begins before its attempt %s ended", h.ID, a.SpanID))
		}
	}
	for _, id := range sortedInts(byLocker) {
		hs := byLocker[id]
		sort.Slice(hs, func(i, j int) bool { return hs[i].Begin < hs[j].Begin })
		for i, x := range hs {
			for _, y := range hs[i+1:] {
				if x.End != 0 && y.Begin >= x.End {
					break
				}
				if x.File == y.File && x.FD != y.FD && lockmodel.Local.Conflict(x.Request, y.Request) &&
					x.Kind != semconv.KindPOSIX {
					errs = append(errs, fmt.Errorf("locker %d holds conflicting locks %s and %s at once", id, x.ID, y.ID))
				}
				if x.File == y.File && x.FD == y.FD && x.Kind == y.Kind && x.Kind != semconv.KindPOSIX &&
					x.Overlaps(y.Request) && x.How != semconv.HoldConverted {
					errs = append(errs, fmt.Errorf("locker %d holds %s and %s on one descriptor at once without a conversion", id, x.ID, y.ID))
				}
			}
		}
	}
	return errs
}

func sortedInts[V any](m map[int64]V) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// valueChecks name the lock attributes whose values form closed sets, with their parsers.
var valueChecks = []struct {
	key   string
	parse func(string) error
}{
	{semconv.LockKind, func(v string) error { _, err := semconv.ParseKind(v); return err }},
	{semconv.LockMode, func(v string) error { _, err := semconv.ParseMode(v); return err }},
	{semconv.LockStyle, func(v string) error { _, err := semconv.ParseStyle(v); return err }},
	{semconv.LockOutcome, func(v string) error { _, err := semconv.ParseOutcome(v); return err }},
	{semconv.LockHoldEnd, func(v string) error { _, err := semconv.ParseHoldEnd(v); return err }},
	{semconv.LockOwnerMode, func(v string) error { _, err := semconv.ParseMode(v); return err }},
	{semconv.LockOwnerClass, func(v string) error { _, err := semconv.ParseOwnerClass(v); return err }},
}

// checkValues reports the span's (and its events') lock attributes that hold a name the value
// set does not have: the analysis reads those as the set's zero value.
func checkValues(s *tracefile.Span) []error {
	var errs []error
	check := func(where string, a tracefile.Attrs) {
		for _, c := range valueChecks {
			v, _ := a.Get(c.key)
			if v, ok := v.(string); ok {
				if err := c.parse(v); err != nil {
					errs = append(errs, fmt.Errorf("span %s (%s)%s: %s: %w", s.SpanID, s.Name, where, c.key, err))
				}
			}
		}
	}
	check("", s.Attrs)
	for _, e := range s.Events {
		check(" event "+e.Name, e.Attrs)
	}
	return errs
}
