package analysis

import (
	"cmp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/lockprobe/lockprobe/semconv"
)

// The run-wide cycle scan sweeps the trace in time order, keeping each locker's open attempt and
// each file's open holds, and looks for a cycle through an owner each time an edge may have
// appeared. Building a whole gonum graph at every such instant would cost too much on a long
// trace; the gonum graph confirms each cycle the sweep finds instead.

type sweepKind int

const (
	evAttemptEnd sweepKind = iota // ends first: a grant ends the attempt at the instant its hold begins
	evHoldEnd
	evAttemptBegin
	evHoldBegin
	evConflict
	evObserved
)

type sweepEv struct {
	t    int64
	seq  int32
	kind sweepKind
	a    *Attempt
	h    *Hold
	ci   int
	o    *Observation
}

// episode is a cycle the sweep found: its lockers in cycle order and their attempts.
type episode struct {
	cycle    []int64
	attempts []*Attempt
	formed   int64
}

type sweep struct {
	m       *model
	cur     map[int64]*Attempt
	cidx    map[int64]int
	holds   map[string]*holdIndex
	obs     map[string]map[string]*Observation // file → observer/query → latest
	stamp   map[int64]int
	gen     int
	seen    map[string]bool
	found   []episode
	targets []int64
}

// scanCycles returns every cycle that formed during the run up to end.
func (m *model) scanCycles(end int64) []episode {
	evs := make([]sweepEv, 0, 2*len(m.attempts)+2*len(m.holds)+len(m.obs))
	for _, a := range m.attempts {
		if a.Begin > end {
			continue
		}
		evs = append(evs, sweepEv{t: a.Begin, kind: evAttemptBegin, a: a})
		if a.End != 0 && a.End < end {
			evs = append(evs, sweepEv{t: a.End, kind: evAttemptEnd, a: a})
		}
		for i, c := range a.Conflicts {
			if c.At <= end {
				evs = append(evs, sweepEv{t: max(c.At, a.Begin), kind: evConflict, a: a, ci: i})
			}
		}
	}
	for _, h := range m.holds {
		if h.Begin > end {
			continue
		}
		evs = append(evs, sweepEv{t: h.Begin, kind: evHoldBegin, h: h})
		if h.End != 0 && h.End < end {
			evs = append(evs, sweepEv{t: h.End, kind: evHoldEnd, h: h})
		}
	}
	for i := range m.obs {
		if m.obs[i].At <= end {
			evs = append(evs, sweepEv{t: m.obs[i].At, kind: evObserved, o: &m.obs[i]})
		}
	}
	for i := range evs {
		evs[i].seq = int32(i)
	}
	slices.SortFunc(evs, func(x, y sweepEv) int {
		if c := cmp.Compare(x.t, y.t); c != 0 {
			return c
		}
		if c := cmp.Compare(x.kind, y.kind); c != 0 {
			return c
		}
		return cmp.Compare(x.seq, y.seq)
	})
	s := &sweep{m: m, cur: map[int64]*Attempt{}, cidx: map[int64]int{}, holds: map[string]*holdIndex{},
		obs: map[string]map[string]*Observation{}, stamp: map[int64]int{}, seen: map[string]bool{}}
	for _, e := range evs {
		switch e.kind {
		case evAttemptEnd:
			if s.cur[e.a.Locker] == e.a {
				delete(s.cur, e.a.Locker)
			}
		case evHoldEnd:
			if x := s.holds[e.h.File]; x != nil {
				x.remove(e.h)
			}
		case evAttemptBegin:
			s.cur[e.a.Locker] = e.a
			s.cidx[e.a.Locker] = -1
			s.check(e.a.Locker, e.t)
		case evHoldBegin:
			x := s.holds[e.h.File]
			if x == nil {
				x = &holdIndex{}
				s.holds[e.h.File] = x
			}
			x.add(e.h)
			s.check(e.h.Locker, e.t)
		case evConflict:
			if s.cur[e.a.Locker] == e.a {
				s.cidx[e.a.Locker] = e.ci
				s.check(e.a.Locker, e.t)
			}
		case evObserved:
			byKey := s.obs[e.o.File]
			if byKey == nil {
				byKey = map[string]*Observation{}
				s.obs[e.o.File] = byKey
			}
			byKey[strconv.FormatInt(e.o.Observer, 10)+"/"+e.o.QueryMode] = e.o
			if e.o.Owner.Locker >= 0 {
				s.check(e.o.Owner.Locker, e.t)
			}
		}
	}
	return s.found
}

// out returns the lockers x waits for now.
func (s *sweep) out(x int64, buf []int64) []int64 {
	buf = buf[:0]
	a := s.cur[x]
	if a == nil {
		return buf
	}
	if i := s.cidx[x]; i >= 0 && i < len(a.Conflicts) {
		if o := a.Conflicts[i].Owner; o.Locker >= 0 && o.Locker != x && o.Class != semconv.OwnerSelf && o.Class != semconv.OwnerNone {
			buf = append(buf, o.Locker)
		}
	}
	s.holds[a.File].each(s.m.sem, a, func(h *Hold) { buf = append(buf, h.Locker) })
	if a.Kind != semconv.KindFlock {
		for _, o := range s.obs[a.File] {
			ow := o.Owner
			if ow.Locker >= 0 && ow.Locker != x && ow.Mode != semconv.ModeNone &&
				s.m.sem.Conflict(a.Request, ow.request(a.Kind)) {
				buf = append(buf, ow.Locker)
			}
		}
	}
	return buf
}

// check looks for a cycle through x by depth-first search and records it when new.
func (s *sweep) check(x, t int64) {
	if s.cur[x] == nil {
		return
	}
	s.gen++
	type frame struct {
		node int64
		next []int64
	}
	stack := []frame{{node: x, next: append([]int64(nil), s.out(x, s.targets)...)}}
	s.stamp[x] = s.gen
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if len(top.next) == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		v := top.next[0]
		top.next = top.next[1:]
		if v == x {
			cycle := make([]int64, len(stack))
			for i, f := range stack {
				cycle[i] = f.node
			}
			s.record(cycle, t)
			return
		}
		if s.stamp[v] == s.gen || s.cur[v] == nil {
			continue
		}
		s.stamp[v] = s.gen
		stack = append(stack, frame{node: v, next: append([]int64(nil), s.out(v, s.targets)...)})
	}
}

func (s *sweep) record(cycle []int64, t int64) {
	// rotate so the smallest locker comes first: one cycle, one key
	k := 0
	for i, id := range cycle {
		if id < cycle[k] {
			k = i
		}
	}
	cycle = append(cycle[k:], cycle[:k]...)
	atts := make([]*Attempt, len(cycle))
	ids := make([]string, len(cycle))
	for i, id := range cycle {
		atts[i] = s.cur[id]
		ids[i] = atts[i].ID
	}
	sort.Strings(ids)
	key := strings.Join(ids, ",")
	if s.seen[key] {
		return
	}
	s.seen[key] = true
	s.found = append(s.found, episode{cycle: cycle, attempts: atts, formed: t})
}

// sccOf returns the index of the strongly connected component of g that holds all ids, or -1.
func (g *WaitGraph) sccOf(ids []int64) int {
	for i, scc := range g.SCCs {
		all := true
		for _, id := range ids {
			j := sort.Search(len(scc), func(j int) bool { return scc[j] >= id })
			all = all && j < len(scc) && scc[j] == id
		}
		if all {
			return i
		}
	}
	return -1
}
