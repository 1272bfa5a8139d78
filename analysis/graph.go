package analysis

import (
	"fmt"
	"sort"

	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/simple"
	"gonum.org/v1/gonum/graph/topo"

	"github.com/lockprobe/lockprobe/semconv"
)

// Evidence sources of a wait-for edge or a finding.
const (
	SourceTrace      = "trace"      // recorded holds and attempts
	SourceFS         = "fs"         // the file system's facts: type and mount options
	SourceGetlk      = "getlk"      // the waiter's own F_GETLK
	SourceObserver   = "observer"   // an observer's F_GETLK
	SourceProcLocks  = "proc-locks" // /proc/locks in the snapshot
	SourceSnapshot   = "snapshot"   // process state in the snapshot
	SourceErrno      = "errno"      // what the lock call returned
	SourceController = "controller" // what the controller saw: a node that fell silent
)

// ForeignBase is where the graph ids of owners that are not lockers start.
const ForeignBase = int64(1) << 32

// GraphNode is one lock owner in a wait-for graph.
type GraphNode struct {
	ID      int64              // the locker id, or ForeignBase+k for other owners
	Locker  int64              // -1 for an owner that is no locker
	Class   semconv.OwnerClass // locker | foreign | unknown
	Node    string
	PID     int64
	Waiting bool
	Holding bool
	// Remote says the answering node has no process of that pid: the holder is on another node.
	Remote bool
}

// GraphEdge is "waiter waits for owner" at the graph's instant.
type GraphEdge struct {
	From    int64
	To      int64
	Attempt string // the waiter's attempt
	Lock           // what the waiter asks for
	Sources []string
	Since   int64 // since when the edge has been there
}

// WaitGraph is the wait-for graph at one instant.
type WaitGraph struct {
	At     int64
	Nodes  []GraphNode
	Edges  []GraphEdge
	Cycles [][]int64 // Cycles[i]: a shortest cycle of SCCs[i], from its smallest id
	SCCs   [][]int64 // the strongly connected components with a cycle, sorted
}

type ownerKey struct {
	locker int64
	class  semconv.OwnerClass
	node   string
	pid    int64
	remote bool
}

type graphBuilder struct {
	m      *model
	t      int64
	open   map[string]*holdIndex             // per file, the holds open at t
	latest map[string]map[string]Observation // per file, each observer's latest answer at t
	keys   map[ownerKey]bool
	edges  map[[2]ownerKey]*GraphEdge
	waits  map[int64]bool
	holds  map[int64]bool
}

func lockerKey(id int64) ownerKey { return ownerKey{locker: id, class: semconv.OwnerLocker} }

// buildGraph builds the wait-for graph at instant t.
func (m *model) buildGraph(t int64) *WaitGraph {
	b := &graphBuilder{m: m, t: t, keys: map[ownerKey]bool{}, edges: map[[2]ownerKey]*GraphEdge{},
		waits: map[int64]bool{}, holds: map[int64]bool{}, open: map[string]*holdIndex{}, latest: map[string]map[string]Observation{}}
	for _, h := range m.holds {
		if h.Begin > t {
			break
		}
		if holdOpen(h, t) {
			b.holds[h.Locker] = true
			x := b.open[h.File]
			if x == nil {
				x = &holdIndex{}
				b.open[h.File] = x
			}
			x.add(h)
		}
	}
	for _, o := range m.obs {
		if o.At > t {
			break
		}
		if b.latest[o.File] == nil {
			b.latest[o.File] = map[string]Observation{}
		}
		b.latest[o.File][fmt.Sprint(o.Observer, "/", o.QueryMode)] = o
	}
	for _, l := range m.lockers {
		a := m.attemptAt(l.ID, t)
		if a == nil {
			continue
		}
		b.waits[l.ID] = true
		b.addWaiter(a)
	}
	b.addProcLocks()
	return b.finish()
}

func (b *graphBuilder) addWaiter(a *Attempt) {
	w := lockerKey(a.Locker)
	b.keys[w] = true
	// (a) the waiter's own F_GETLK: its answer holds from the first of the run of answers naming
	// the same owner.
	if i := conflictAt(a, b.t); i >= 0 {
		c := a.Conflicts[i]
		since := c.At
		for j := i - 1; j >= 0 && sameOwner(a.Conflicts[j].Owner, c.Owner); j-- {
			since = a.Conflicts[j].At
		}
		src := c.Owner.Source
		if src == "" || src == semconv.OwnerFromNone {
			src = SourceGetlk
		}
		b.edgeTo(a, c.Owner, b.m.locker(a.Locker).Node, max(since, a.Begin), src)
	}
	// (b) recorded holds of other lockers that conflict.
	b.open[a.File].each(b.m.sem, a, func(h *Hold) {
		b.addEdge(a, lockerKey(h.Locker), max(h.Begin, a.Begin), SourceTrace)
	})
	// (c) observers: the latest answer of each observer for the file.
	if a.Kind == semconv.KindFlock {
		return
	}
	latest := b.latest[a.File]
	for _, k := range sortedKeys(latest) {
		o := latest[k]
		if o.Owner.Class == semconv.OwnerNone || o.Owner.Mode == semconv.ModeNone {
			continue
		}
		if !b.m.sem.Conflict(a.Request, o.Owner.request(a.Kind)) {
			continue
		}
		b.edgeTo(a, o.Owner, o.Node, max(o.At, a.Begin), SourceObserver)
	}
}

func sameOwner(x, y Owner) bool {
	return x.Class == y.Class && x.Locker == y.Locker && x.PID == y.PID && x.Node == y.Node
}

// edgeTo adds an edge to the owner an F_GETLK answer names.
func (b *graphBuilder) edgeTo(a *Attempt, o Owner, node string, since int64, src string) {
	switch o.Class {
	case semconv.OwnerLocker:
		if o.Locker >= 0 && o.Locker != a.Locker {
			b.addEdge(a, lockerKey(o.Locker), since, src)
		}
	case semconv.OwnerSelf:
		// the waiter itself: no edge, a lost-callback sign the detectors read
	case semconv.OwnerForeign, semconv.OwnerUnknown:
		if o.Locker >= 0 && o.Locker != a.Locker {
			b.addEdge(a, lockerKey(o.Locker), since, src)
			return
		}
		if o.Locker == a.Locker && o.Locker >= 0 {
			return
		}
		if o.Node != "" {
			node = o.Node
		}
		b.addEdge(a, ownerKey{locker: -1, class: o.Class, node: node, pid: o.PID, remote: o.Remote}, since, src)
	}
}

func (b *graphBuilder) addEdge(a *Attempt, to ownerKey, since int64, src string) {
	from := lockerKey(a.Locker)
	if from == to {
		return
	}
	b.keys[to] = true
	k := [2]ownerKey{from, to}
	e, ok := b.edges[k]
	if !ok {
		e = &GraphEdge{Attempt: a.ID, Lock: a.lock(), Since: since, Sources: []string{}}
		b.edges[k] = e
	}
	if since < e.Since {
		e.Since = since
	}
	for _, s := range e.Sources {
		if s == src {
			return
		}
	}
	e.Sources = append(e.Sources, src)
	sort.Strings(e.Sources)
}

// addProcLocks adds the waits /proc/locks showed in the snapshot, once the snapshot is taken.
func (b *graphBuilder) addProcLocks() {
	if len(b.m.plocks) == 0 || b.t < b.m.snapAt {
		return
	}
	byID := map[int64]ProcLock{}
	for _, p := range b.m.plocks {
		byID[p.ID] = p
	}
	for _, p := range b.m.plocks {
		if p.Blocker == 0 {
			continue
		}
		holder, ok := byID[p.Blocker]
		if !ok {
			continue
		}
		if p.Locker < 0 {
			continue
		}
		a := b.m.attemptAt(p.Locker, b.t)
		if a == nil {
			continue
		}
		w := b.m.owner(holder.Node, holder.PID, p.Locker)
		o := Owner{PID: holder.PID, Locker: w.Locker(), Class: w.Class, Node: w.Node}
		b.edgeTo(a, o, holder.Node, b.m.snapAt, SourceProcLocks)
	}
}

func (b *graphBuilder) finish() *WaitGraph {
	keys := make([]ownerKey, 0, len(b.keys))
	for k := range b.keys {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keyLess(keys[i], keys[j]) })
	ids := map[ownerKey]int64{}
	g := &WaitGraph{At: b.t, Nodes: []GraphNode{}, Edges: []GraphEdge{}, Cycles: [][]int64{}, SCCs: [][]int64{}}
	next := ForeignBase
	for _, k := range keys {
		n := GraphNode{Locker: k.locker, Class: k.class, Node: k.node, PID: k.pid, Remote: k.remote}
		if k.locker >= 0 {
			l := b.m.locker(k.locker)
			n.ID, n.Node, n.PID = k.locker, l.Node, l.PID
			n.Waiting, n.Holding = b.waits[k.locker], b.holds[k.locker]
		} else {
			n.ID = next
			next++
			n.Holding = true
		}
		ids[k] = n.ID
		g.Nodes = append(g.Nodes, n)
	}
	for k, e := range b.edges {
		e.From, e.To = ids[k[0]], ids[k[1]]
		g.Edges = append(g.Edges, *e)
	}
	sort.Slice(g.Edges, func(i, j int) bool {
		if g.Edges[i].From != g.Edges[j].From {
			return g.Edges[i].From < g.Edges[j].From
		}
		return g.Edges[i].To < g.Edges[j].To
	})
	g.findCycles()
	return g
}

func keyLess(x, y ownerKey) bool {
	if (x.locker >= 0) != (y.locker >= 0) {
		return x.locker >= 0
	}
	if x.locker != y.locker {
		return x.locker < y.locker
	}
	if x.class != y.class {
		return x.class < y.class
	}
	if x.node != y.node {
		return x.node < y.node
	}
	if x.pid != y.pid {
		return x.pid < y.pid
	}
	return !x.remote && y.remote
}

// findCycles finds the strongly connected components with gonum's Tarjan and one shortest cycle
// in each. Listing every elementary cycle is exponential (N readers upgrading at once form a
// complete graph), and one cycle per component is what a report needs.
func (g *WaitGraph) findCycles() {
	dg := simple.NewDirectedGraph()
	for _, n := range g.Nodes {
		dg.AddNode(simple.Node(n.ID))
	}
	for _, e := range g.Edges {
		dg.SetEdge(dg.NewEdge(simple.Node(e.From), simple.Node(e.To)))
	}
	for _, scc := range topo.TarjanSCC(dg) {
		if len(scc) < 2 {
			continue
		}
		ids := make([]int64, len(scc))
		for i, n := range scc {
			ids[i] = n.ID()
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		g.SCCs = append(g.SCCs, ids)
		g.Cycles = append(g.Cycles, shortestCycle(dg, ids))
	}
	sort.Slice(g.SCCs, func(i, j int) bool { return g.SCCs[i][0] < g.SCCs[j][0] })
	sort.Slice(g.Cycles, func(i, j int) bool { return g.Cycles[i][0] < g.Cycles[j][0] })
}

// shortestCycle returns a shortest cycle through the smallest node of a strongly connected
// component, by breadth-first search inside it, neighbours in id order.
func shortestCycle(dg graph.Directed, scc []int64) []int64 {
	in := map[int64]bool{}
	for _, id := range scc {
		in[id] = true
	}
	start := scc[0]
	prev := map[int64]int64{}
	queue := []int64{start}
	seen := map[int64]bool{start: true}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		succ := graph.NodesOf(dg.From(u))
		sort.Slice(succ, func(i, j int) bool { return succ[i].ID() < succ[j].ID() })
		for _, n := range succ {
			v := n.ID()
			if !in[v] {
				continue
			}
			if v == start {
				path := []int64{u}
				for path[len(path)-1] != start {
					path = append(path, prev[path[len(path)-1]])
				}
				for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
					path[i], path[j] = path[j], path[i]
				}
				return path
			}
			if !seen[v] {
				seen[v] = true
				prev[v] = u
				queue = append(queue, v)
			}
		}
	}
	return scc
}

// edge returns the edge from → to, or nil.
func (g *WaitGraph) edge(from, to int64) *GraphEdge {
	i := sort.Search(len(g.Edges), func(i int) bool {
		e := g.Edges[i]
		return e.From > from || (e.From == from && e.To >= to)
	})
	if i < len(g.Edges) && g.Edges[i].From == from && g.Edges[i].To == to {
		return &g.Edges[i]
	}
	return nil
}

// node returns the node of that id, or nil. Nodes are sorted by id.
func (g *WaitGraph) node(id int64) *GraphNode {
	i := sort.Search(len(g.Nodes), func(i int) bool { return g.Nodes[i].ID >= id })
	if i < len(g.Nodes) && g.Nodes[i].ID == id {
		return &g.Nodes[i]
	}
	return nil
}

// out returns the edges from id, in order of their target.
func (g *WaitGraph) out(id int64) []GraphEdge {
	i := sort.Search(len(g.Edges), func(i int) bool { return g.Edges[i].From >= id })
	j := i
	for j < len(g.Edges) && g.Edges[j].From == id {
		j++
	}
	return g.Edges[i:j]
}

// cycleFormed is the instant the last edge of a cycle appeared.
func (g *WaitGraph) cycleFormed(cycle []int64) int64 {
	var formed int64
	for i, from := range cycle {
		if e := g.edge(from, cycle[(i+1)%len(cycle)]); e != nil && e.Since > formed {
			formed = e.Since
		}
	}
	return formed
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
