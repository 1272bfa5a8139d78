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

type sweepKind uint8

const (
	evAttemptEnd sweepKind = iota // ends first: a grant ends the attempt at the instant its hold begins
	evHoldEnd
	evAttemptBegin
	evHoldBegin
	evConflict
	evObserved
)

// sweepEv is one instant of the sweep. It names its attempt, hold or observation by its index
// in the model rather than by pointer: at 10^6 events the sweep sorts over a million of them,
// and a value of 24 bytes without pointers is half the memory to move and nothing for the
// collector to scan.
type sweepEv struct {
	t    int64
	seq  int32
	i    int32 // index in m.attempts, m.holds or m.obs, by kind
	ci   int32 // the conflict's index in its attempt
	kind sweepKind
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
	for ai, a := range m.attempts {
		if a.Begin > end {
			continue
		}
		evs = append(evs, sweepEv{t: a.Begin, kind: evAttemptBegin, i: int32(ai)})
		if a.End != 0 && a.End < end {
			evs = append(evs, sweepEv{t: a.End, kind: evAttemptEnd, i: int32(ai)})
		}
		for i, c := range a.Conflicts {
			if c.At <= end {
				evs = append(evs, sweepEv{t: max(c.At, a.Begin), kind: evConflict, i: int32(ai), ci: int32(i)})
			}
		}
	}
	for hi, h := range m.holds {
		if h.Begin > end {
			continue
		}
		evs = append(evs, sweepEv{t: h.Begin, kind: evHoldBegin, i: int32(hi)})
		if h.End != 0 && h.End < end {
			evs = append(evs, sweepEv{t: h.End, kind: evHoldEnd, i: int32(hi)})
		}
	}
	for i := range m.obs {
		if m.obs[i].At <= end {
			evs = append(evs, sweepEv{t: m.obs[i].At, kind: evObserved, i: int32(i)})
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
			if a := m.attempts[e.i]; s.cur[a.Locker] == a {
				delete(s.cur, a.Locker)
			}
		case evHoldEnd:
			h := m.holds[e.i]
			if x := s.holds[h.File]; x != nil {
				x.remove(h)
			}
		case evAttemptBegin:
			a := m.attempts[e.i]
			s.cur[a.Locker] = a
			s.cidx[a.Locker] = -1
			s.check(a.Locker, e.t)
		case evHoldBegin:
			h := m.holds[e.i]
			x := s.holds[h.File]
			if x == nil {
				x = &holdIndex{}
				s.holds[h.File] = x
			}
			x.add(h)
			s.check(h.Locker, e.t)
		case evConflict:
			if a := m.attempts[e.i]; s.cur[a.Locker] == a {
				s.cidx[a.Locker] = int(e.ci)
				s.check(a.Locker, e.t)
			}
		case evObserved:
			o := &m.obs[e.i]
			byKey := s.obs[o.File]
			if byKey == nil {
				byKey = map[string]*Observation{}
				s.obs[o.File] = byKey
			}
			byKey[strconv.FormatInt(o.Observer, 10)+"/"+o.QueryMode] = o
			if o.Owner.Locker >= 0 {
				s.check(o.Owner.Locker, e.t)
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
