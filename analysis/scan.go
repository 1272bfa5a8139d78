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

// sweepEv is an instant of the sweep that comes out of order: an attempt's or a hold's end, a
// conflict answer. It names its attempt or hold by index in the model.
type sweepEv struct {
	t  int64
	i  int32 // index in m.attempts or m.holds
	ci int32 // the conflict's index in its attempt
}

func sweepCmp(x, y sweepEv) int {
	if c := cmp.Compare(x.t, y.t); c != 0 {
		return c
	}
	if c := cmp.Compare(x.i, y.i); c != 0 {
		return c
	}
	return cmp.Compare(x.ci, y.ci)
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
//
// The sweep takes the instants in time order, at one instant by kind (sweepKind's order), and
// of one kind in the order of the attempts, holds and observations in the model. The begins of
// attempts and holds and the observations are in that order in the model already; the ends and
// the conflict answers are put in it, and the six streams merged: sorting all of them together
// (1.7 million at 10^6 events) was half of the analysis's time.
func (m *model) scanCycles(end int64) []episode {
	var attEnds, holdEnds, conflicts []sweepEv
	nAtt := 0 // the attempts begun by end: a prefix, as they are sorted by begin
	for ai, a := range m.attempts {
		if a.Begin > end {
			break
		}
		nAtt = ai + 1
		if a.End != 0 && a.End < end {
			attEnds = append(attEnds, sweepEv{t: a.End, i: int32(ai)})
		}
		for i, c := range a.Conflicts {
			if c.At <= end {
				conflicts = append(conflicts, sweepEv{t: max(c.At, a.Begin), i: int32(ai), ci: int32(i)})
			}
		}
	}
	nHold := 0
	for hi, h := range m.holds {
		if h.Begin > end {
			break
		}
		nHold = hi + 1
		if h.End != 0 && h.End < end {
			holdEnds = append(holdEnds, sweepEv{t: h.End, i: int32(hi)})
		}
	}
	nObs := sort.Search(len(m.obs), func(i int) bool { return m.obs[i].At > end })
	for _, evs := range [][]sweepEv{attEnds, holdEnds, conflicts} {
		if !slices.IsSortedFunc(evs, sweepCmp) {
			slices.SortFunc(evs, sweepCmp)
		}
	}
	s := &sweep{m: m, cur: map[int64]*Attempt{}, cidx: map[int64]int{}, holds: map[string]*holdIndex{},
		obs: map[string]map[string]*Observation{}, stamp: map[int64]int{}, seen: map[string]bool{}}
	var pos [6]int // the next instant of each kind
	size := [6]int{evAttemptEnd: len(attEnds), evHoldEnd: len(holdEnds), evAttemptBegin: nAtt, evHoldBegin: nHold,
		evConflict: len(conflicts), evObserved: nObs}
	at := func(k sweepKind) int64 {
		i := pos[k]
		switch k {
		case evAttemptEnd:
			return attEnds[i].t
		case evHoldEnd:
			return holdEnds[i].t
		case evAttemptBegin:
			return m.attempts[i].Begin
		case evHoldBegin:
			return m.holds[i].Begin
		case evConflict:
			return conflicts[i].t
		}
		return m.obs[i].At
	}
	for {
		kind, t := sweepKind(0), int64(0)
		found := false
		for k := evAttemptEnd; k <= evObserved; k++ {
			if pos[k] < size[k] {
				if tk := at(k); !found || tk < t {
					kind, t, found = k, tk, true
				}
			}
		}
		if !found {
			break
		}
		i := pos[kind]
		pos[kind]++
		switch kind {
		case evAttemptEnd:
			if a := m.attempts[attEnds[i].i]; s.cur[a.Locker] == a {
				delete(s.cur, a.Locker)
			}
		case evHoldEnd:
			h := m.holds[holdEnds[i].i]
			if x := s.holds[h.File]; x != nil {
				x.remove(h)
			}
		case evAttemptBegin:
			a := m.attempts[i]
			s.cur[a.Locker] = a
			s.cidx[a.Locker] = -1
			s.check(a.Locker, t)
		case evHoldBegin:
			h := m.holds[i]
			x := s.holds[h.File]
			if x == nil {
				x = &holdIndex{}
				s.holds[h.File] = x
			}
			x.add(h)
			s.check(h.Locker, t)
		case evConflict:
			e := conflicts[i]
			if a := m.attempts[e.i]; s.cur[a.Locker] == a {
				s.cidx[a.Locker] = int(e.ci)
				s.check(a.Locker, t)
			}
		case evObserved:
			o := &m.obs[i]
			byKey := s.obs[o.File]
			if byKey == nil {
				byKey = map[string]*Observation{}
				s.obs[o.File] = byKey
			}
			byKey[strconv.FormatInt(o.Observer, 10)+"/"+o.QueryMode] = o
			if o.Owner.Locker >= 0 {
				s.check(o.Owner.Locker, t)
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
