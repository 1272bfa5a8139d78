package analysis

import (
	"math"
	"sort"

	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// holdIndex holds the open holds of one file so that the holds conflicting with a request are
// found without scanning them all: a ring of 10^4 lockers, each holding one byte, would otherwise
// cost 10^8 comparisons per wait-for graph.
type holdIndex struct {
	byStart []*Hold // bounded POSIX/OFD holds, sorted by start then id
	toEOF   []*Hold // holds to the end of the file, and flock holds (whole file)
	maxLen  int64   // an upper bound of the lengths in byStart
}

func wholeFile(h *Hold) bool { return h.To() == lockmodel.EOF }

func holdLess(x, y *Hold) bool {
	if x.Start != y.Start {
		return x.Start < y.Start
	}
	return x.ID < y.ID
}

func (x *holdIndex) add(h *Hold) {
	if wholeFile(h) {
		x.toEOF = append(x.toEOF, h)
		return
	}
	i := sort.Search(len(x.byStart), func(i int) bool { return !holdLess(x.byStart[i], h) })
	x.byStart = append(x.byStart, nil)
	copy(x.byStart[i+1:], x.byStart[i:])
	x.byStart[i] = h
	x.maxLen = max(x.maxLen, h.Len)
}

func (x *holdIndex) remove(h *Hold) {
	if wholeFile(h) {
		for i, y := range x.toEOF {
			if y == h {
				x.toEOF = append(x.toEOF[:i], x.toEOF[i+1:]...)
				return
			}
		}
		return
	}
	i := sort.Search(len(x.byStart), func(i int) bool { return !holdLess(x.byStart[i], h) })
	if i < len(x.byStart) && x.byStart[i] == h {
		x.byStart = append(x.byStart[:i], x.byStart[i+1:]...)
	}
}

// each calls fn for every indexed hold of another locker that conflicts with the request under
// the file system's semantics.
func (x *holdIndex) each(sem lockmodel.Semantics, a *Attempt, fn func(h *Hold)) {
	if x == nil {
		return
	}
	for _, h := range x.toEOF {
		if h.Locker != a.Locker && sem.Conflict(a.Request, h.Request) {
			fn(h)
		}
	}
	if a.Kind == semconv.KindFlock && !sem.FlockWithFcntl {
		return // a flock request conflicts with no bounded fcntl lock
	}
	end := a.To()
	if a.Kind == semconv.KindFlock {
		end = lockmodel.EOF
	}
	lo := a.From() - x.maxLen
	i := sort.Search(len(x.byStart), func(i int) bool { return x.byStart[i].Start > lo })
	for ; i < len(x.byStart) && x.byStart[i].Start < end; i++ {
		h := x.byStart[i]
		if h.Locker != a.Locker && sem.Conflict(a.Request, h.Request) {
			fn(h)
		}
	}
}

// indexHoldEnds records, for each locker's holds in begin order, the latest end so far, so that
// the holds open at an instant are found from the last one begun, going back only while an
// earlier one can still be open: a locker of a long run has thousands of holds, and the owner
// rule and the detectors ask about one instant at a time.
func (m *model) indexHoldEnds() {
	m.holdsTill = make(map[int64][]int64, len(m.holdsOf))
	for l, hs := range m.holdsOf {
		till := make([]int64, len(hs))
		latest := int64(math.MinInt64)
		for i, h := range hs {
			end := h.End
			if end == 0 {
				end = math.MaxInt64
			}
			latest = max(latest, end)
			till[i] = latest
		}
		m.holdsTill[l] = till
	}
}

// holdsOpenAt calls fn with each hold of the locker open at t, latest begun first, until fn
// returns true; it reports whether fn did.
func (m *model) holdsOpenAt(locker, t int64, fn func(h *Hold) bool) bool {
	hs, till := m.holdsOf[locker], m.holdsTill[locker]
	i := sort.Search(len(hs), func(i int) bool { return hs[i].Begin > t })
	for j := i - 1; j >= 0 && till[j] >= t; j-- {
		if holdOpen(hs[j], t) && fn(hs[j]) {
			return true
		}
	}
	return false
}
