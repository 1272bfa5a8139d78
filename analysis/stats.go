package analysis

import (
	"sort"

	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// Percentiles summarise a distribution of durations in ns.
type Percentiles struct {
	Count int
	P50   int64
	P90   int64
	P99   int64
	Max   int64
}

// Fairness compares grant order with request order among attempts that waited on one file.
type Fairness struct {
	Pairs      int64   // pairs of waits on one file that overlapped in time
	Inversions int64   // of those, pairs granted in the other order than asked
	Ratio      float64 // inversions / pairs: 0 = first come first served
}

// Starvation is a waiter that later requests overtook.
type Starvation struct {
	Locker     int64
	Attempt    string
	File       string
	Mode       semconv.Mode
	PassedOver int
	WaitNS     int64
	Granted    bool
}

// FireInstant is one scheduled instant that several attempts shared.
type FireInstant struct {
	At     int64
	Count  int
	Spread int64 // latest start − earliest start
}

// FireSpread summarises how closely attempts scheduled for one instant started.
type FireSpread struct {
	Instants []FireInstant
	Median   int64
	P99      int64
	Max      int64
}

// Stats are the run's statistics.
type Stats struct {
	Attempts   int
	Waits      int
	Holds      int
	Outcomes   map[semconv.Outcome]int
	WaitByMode map[semconv.Mode]Percentiles
	HandOff    Percentiles
	Fairness   Fairness
	Starved    []Starvation // passed over at least twice, worst first
	Fire       FireSpread
}

// LockerSummary is one row of the per-locker table.
type LockerSummary struct {
	Locker      int64
	Role        string
	Node        string
	PID         int64
	State       string
	Wchan       string
	Stack       []string
	Inflight    string
	LastCommand string
	Attempts    int
	Waits       int
	Holds       int
	WaitNS      int64
	HoldNS      int64
	Rechecks    int64 // granted calls that re-took a held lock unchanged
	Outcomes    map[semconv.Outcome]int
	Exit        string
}

// HostFacts are the facts of one node.
type HostFacts struct {
	Node    string
	Facts   map[string]string
	Lockers []int64
	// ClockOffset is the node's clock offset to the controller's (controller − node), as its
	// locker with the tightest bound measured it; ClockUncertainty is the widest bound of its
	// lockers: every comparison with another node's instants is widened by it.
	ClockOffset      int64
	ClockUncertainty int64
}

// maxStarved caps the starvation list.
const maxStarved = 100

func percentiles(v []int64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	at := func(q float64) int64 {
		i := int(q*float64(len(v)-1) + 0.5)
		return v[i]
	}
	return Percentiles{Count: len(v), P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: v[len(v)-1]}
}

// waited tells which attempts had to wait: a conflicting hold of another locker was open when
// the attempt began, or one began and ended while a waiting call was in the kernel (the attempt
// was granted after it, so that hold went first), or it recorded a conflict or a failed try, or
// it did not end granted.
//
// The second case is a contention's first instant: lockers that fire together each begin before
// any of them is granted, so no hold is open at their beginnings, and a waiter granted sooner
// than its watcher's first look (5 ms) recorded no conflict either; those hand-offs were counted
// as attempts that did not wait, by chance of the scheduling.
func (m *model) waited(end int64) []bool {
	out := make([]bool, len(m.attempts))
	open := map[string][]*Hold{}
	hi := 0
	for _, a := range m.attempts {
		for hi < len(m.holds) && m.holds[hi].Begin <= a.Begin {
			h := m.holds[hi]
			open[h.File] = append(open[h.File], h)
			hi++
		}
		if len(a.Conflicts) > 0 || len(a.TryTimes) > 0 || a.Outcome != semconv.OutcomeGranted {
			out[a.idx] = true
			continue
		}
		list := open[a.File]
		kept := list[:0]
		for _, h := range list {
			if holdOpen(h, a.Begin) {
				kept = append(kept, h)
				if h.Locker != a.Locker && m.sem.Conflict(a.Request, h.Request) {
					out[a.idx] = true
				}
			}
		}
		open[a.File] = kept
		if !out[a.idx] && a.Style == semconv.StyleWait {
			out[a.idx] = m.wentFirst(a, hi)
		}
	}
	return out
}

// wentFirst says a conflicting hold of another locker began after the granted attempt a did and
// ended before its grant; the holds from index from on began after a. Holds are sorted by their
// beginning, so the scan stops at a's grant: it looks at the holds of a's wait only.
func (m *model) wentFirst(a *Attempt, from int) bool {
	for _, h := range m.holds[from:] {
		if h.Begin >= a.End {
			return false
		}
		if h.File == a.File && h.Locker != a.Locker && h.End != 0 && h.End <= a.End && m.sem.Conflict(a.Request, h.Request) {
			return true
		}
	}
	return false
}

// figures are the statistics of a run that ended at end.
type figures struct {
	waited    []bool // by attempt index
	stats     Stats
	summaries []LockerSummary
}

// figures computes them; it changes nothing in m, so it may run beside the detectors.
func (m *model) figures(end int64) figures {
	waited := m.waited(end)
	return figures{waited: waited, stats: m.stats(end, waited), summaries: m.summaries(end, waited)}
}

func (r *Result) fill(m *model, st figures) {
	r.Lockers = make([]Locker, 0, len(m.lockers))
	for _, l := range m.lockers {
		r.Lockers = append(r.Lockers, *l)
	}
	r.Observers = make([]Locker, 0, len(m.observers))
	for _, l := range m.observers {
		r.Observers = append(r.Observers, *l)
	}
	// The model's blocks, not copies: nothing changes them once the model is built.
	r.Attempts = m.attempts
	r.Holds = m.holds
	r.Getlks = make([]Getlk, 0, len(m.getlks))
	for _, g := range m.getlks {
		r.Getlks = append(r.Getlks, *g)
	}
	r.Observations = m.obs
	r.States = m.states
	r.ProcLocks = m.plocks
	for _, a := range m.attempts {
		a.Waited = st.waited[a.idx]
	}
	r.Stats = st.stats
	r.Summaries = st.summaries
	r.Hosts = m.hosts()
	r.Silences = nonNilSilences(m.silences)
}

func (m *model) stats(end int64, waited []bool) Stats {
	st := Stats{Attempts: len(m.attempts), Holds: len(m.holds), Outcomes: map[semconv.Outcome]int{},
		WaitByMode: map[semconv.Mode]Percentiles{}, Starved: []Starvation{}, Fire: FireSpread{Instants: []FireInstant{}}}
	byMode := map[semconv.Mode][]int64{}
	for _, a := range m.attempts {
		st.Outcomes[a.Outcome]++
		if waited[a.idx] {
			st.Waits++
			byMode[a.Mode] = append(byMode[a.Mode], attemptEnd(a, end)-a.Begin)
		}
	}
	for mode, v := range byMode {
		st.WaitByMode[mode] = percentiles(v)
	}
	st.HandOff = m.handOff(waited)
	st.Fairness, st.Starved = m.fairness(end, waited)
	st.Fire = m.fireSpread()
	return st
}

func attemptEnd(a *Attempt, end int64) int64 {
	if a.End == 0 || a.End > end {
		return end
	}
	return a.End
}

// handOff measures, for each grant of a waiter, the time from the latest conflicting release of
// another locker during its wait to the grant.
func (m *model) handOff(waited []bool) Percentiles {
	ends := map[string][]*Hold{}
	for _, h := range m.holds {
		if h.End != 0 && h.How != semconv.HoldRunEnd {
			ends[h.File] = append(ends[h.File], h)
		}
	}
	for _, list := range ends {
		sort.Slice(list, func(i, j int) bool { return list[i].End < list[j].End })
	}
	var v []int64
	for _, a := range m.attempts {
		if !waited[a.idx] || a.Outcome != semconv.OutcomeGranted || a.End == 0 {
			continue
		}
		list := ends[a.File]
		i := sort.Search(len(list), func(i int) bool { return list[i].End > a.End })
		for j := i - 1; j >= 0 && list[j].End >= a.Begin; j-- {
			h := list[j]
			if h.Locker != a.Locker && m.sem.Conflict(a.Request, h.Request) {
				v = append(v, a.End-h.End)
				break
			}
		}
	}
	return percentiles(v)
}

// fairness counts, per file, later requests granted before earlier ones that were still waiting
// (with a Fenwick tree over grant order), and lists the waiters passed over at least twice.
func (m *model) fairness(end int64, waited []bool) (Fairness, []Starvation) {
	byFile := map[string][]*Attempt{}
	for _, a := range m.attempts {
		if waited[a.idx] {
			byFile[a.File] = append(byFile[a.File], a)
		}
	}
	var fr Fairness
	starved := []Starvation{}
	for _, file := range sortedKeys(byFile) {
		list := byFile[file] // in request order
		n := len(list)
		ends := make([]int64, n)
		for i, a := range list {
			ends[i] = grantEnd(a, end)
		}
		sorted := append([]int64(nil), ends...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		rank := func(v int64) int { return sort.Search(n, func(i int) bool { return sorted[i] >= v }) + 1 }
		all, writes := newFenwick(n), newFenwick(n)
		begins := make([]int64, n)
		for i, a := range list {
			begins[i] = a.Begin
		}
		// Walk from the latest request back: the tree holds the requests after i.
		for i := n - 1; i >= 0; i-- {
			a := list[i]
			r := rank(ends[i])
			var over int64
			if a.Mode == semconv.ModeWrite {
				over = all.sum(r - 1)
			} else {
				over = writes.sum(r - 1)
			}
			fr.Inversions += over
			// pairs with a later request that began before this one was granted
			fr.Pairs += int64(sort.Search(n, func(j int) bool { return begins[j] >= ends[i] }) - i - 1)
			if over >= 2 {
				starved = append(starved, Starvation{Locker: a.Locker, Attempt: a.ID, File: file, Mode: a.Mode,
					PassedOver: int(over), WaitNS: ends[i] - a.Begin, Granted: a.Outcome == semconv.OutcomeGranted})
			}
			all.add(r)
			if a.Mode == semconv.ModeWrite {
				writes.add(r)
			}
		}
	}
	if fr.Pairs > 0 {
		fr.Ratio = float64(fr.Inversions) / float64(fr.Pairs)
	}
	sort.SliceStable(starved, func(i, j int) bool {
		if starved[i].PassedOver != starved[j].PassedOver {
			return starved[i].PassedOver > starved[j].PassedOver
		}
		return starved[i].Attempt < starved[j].Attempt
	})
	if len(starved) > maxStarved {
		starved = starved[:maxStarved]
	}
	return fr, starved
}

// grantEnd is when an attempt stopped waiting; never, for one still blocked at the end.
func grantEnd(a *Attempt, end int64) int64 {
	if a.End == 0 || a.Outcome == semconv.OutcomeBlocked || a.Outcome == semconv.OutcomeWaiting {
		return lockmodel.EOF
	}
	return a.End
}

type fenwick []int64

func newFenwick(n int) fenwick { return make(fenwick, n+1) }

func (f fenwick) add(i int) {
	for ; i < len(f); i += i & -i {
		f[i]++
	}
}

func (f fenwick) sum(i int) int64 {
	var s int64
	for ; i > 0; i -= i & -i {
		s += f[i]
	}
	return s
}

func (m *model) fireSpread() FireSpread {
	groups := map[int64][2]int64{}
	counts := map[int64]int{}
	for _, a := range m.attempts {
		if a.Scheduled == 0 {
			continue
		}
		g, ok := groups[a.Scheduled]
		if !ok {
			g = [2]int64{a.Begin, a.Begin}
		}
		g[0], g[1] = min(g[0], a.Begin), max(g[1], a.Begin)
		groups[a.Scheduled] = g
		counts[a.Scheduled]++
	}
	fs := FireSpread{Instants: []FireInstant{}}
	var spreads []int64
	for at, g := range groups {
		if counts[at] < 2 {
			continue
		}
		fs.Instants = append(fs.Instants, FireInstant{At: at, Count: counts[at], Spread: g[1] - g[0]})
		spreads = append(spreads, g[1]-g[0])
	}
	sort.Slice(fs.Instants, func(i, j int) bool { return fs.Instants[i].At < fs.Instants[j].At })
	p := percentiles(spreads)
	fs.Median, fs.P99, fs.Max = p.P50, p.P99, p.Max
	return fs
}

func (m *model) summaries(end int64, waited []bool) []LockerSummary {
	out := make([]LockerSummary, 0, len(m.lockers))
	states := map[int64]ProcState{}
	for _, s := range m.states {
		states[s.Locker] = s
	}
	for _, l := range m.lockers {
		s := LockerSummary{Locker: l.ID, Role: l.Role, Node: l.Node, PID: l.PID, Stack: []string{}, Outcomes: map[semconv.Outcome]int{}}
		if st, ok := states[l.ID]; ok {
			s.State, s.Wchan, s.Inflight = st.State, st.Wchan, st.Inflight
			if st.Stack != nil {
				s.Stack = st.Stack
			}
		}
		for _, a := range m.byLocker[l.ID] {
			s.Attempts++
			s.Outcomes[a.Outcome]++
			if waited[a.idx] {
				s.Waits++
				s.WaitNS += attemptEnd(a, end) - a.Begin
			}
			if a.CmdText != "" {
				s.LastCommand = a.CmdText
			}
		}
		for _, h := range m.holdsOf[l.ID] {
			s.Holds++
			s.HoldNS += holdEnd(h, end) - h.Begin
			s.Rechecks += h.Rechecks
		}
		if l.Exited {
			s.Exit = l.ExitStatus
			if l.ExitSignal != "" {
				s.Exit += " (" + l.ExitSignal + ")"
			}
		}
		out = append(out, s)
	}
	return out
}

func (m *model) hosts() []HostFacts {
	byNode := map[string]*HostFacts{}
	best := map[string]int64{} // the tightest bound of a node's lockers so far
	for _, l := range append(append([]*Locker(nil), m.lockers...), m.observers...) {
		h, ok := byNode[l.Node]
		if !ok {
			h = &HostFacts{Node: l.Node, Facts: map[string]string{}, Lockers: []int64{}}
			byNode[l.Node] = h
		}
		for k, v := range l.Facts {
			if _, ok := h.Facts[k]; !ok {
				h.Facts[k] = v
			}
		}
		if l.Role != "observer" {
			if len(h.Lockers) == 0 || l.Uncertainty < best[l.Node] {
				h.ClockOffset, best[l.Node] = l.Offset, l.Uncertainty
			}
			h.ClockUncertainty = max(h.ClockUncertainty, l.Uncertainty)
			h.Lockers = append(h.Lockers, l.ID)
		}
	}
	out := make([]HostFacts, 0, len(byNode))
	for _, k := range sortedKeys(byNode) {
		out = append(out, *byNode[k])
	}
	return out
}
