package reports

import (
	"cmp"
	"fmt"
	"math"
	"path"
	"sort"
	"strings"
)

// The wait-for graph is drawn on a circle: the cycle's members first, in cycle order, so a
// deadlock reads as a ring of arrows; other owners follow by id. A force-directed layout (gonum's
// graph/layout) gives a different picture for every small change of the graph and crosses the
// cycle's edges; the circle keeps the one thing the reader must see in plain view.
const (
	gNodeW     = 156.0
	gNodeH     = 42.0
	gMargin    = 40.0
	gMaxEdges  = 600 // beyond it, only the cycle's edges and the first others are drawn
	gMaxLabels = 40  // beyond it, edge labels move into hover titles
)

type graphSVG struct {
	W, H    string
	ViewBox string
	Nodes   []gNode
	Edges   []gEdge
	Empty   bool
	Omitted int
	Notes   []string
}

type gNode struct {
	X, Y   string // top left of the box
	W, H   string
	TX, TY string // text anchor
	Line1  string
	Line2  string
	Class  string
	Title  string
}

type gEdge struct {
	D      string
	LX, LY string
	Label  string
	Title  string
	Class  string
}

type pt struct{ x, y float64 }

func buildGraphSVG(v *View) graphSVG {
	g := v.Graph
	nodes := append([]GraphNodeView(nil), g.Nodes...)
	have := map[int64]bool{}
	for _, n := range nodes {
		have[n.ID] = true
	}
	// The verdict's lockers belong in the picture even when no edge touches them (a waiter that
	// F_GETLK says holds its own lock has no one to wait for).
	for _, id := range v.Verdict.Lockers {
		if have[id] {
			continue
		}
		for _, l := range v.Lockers {
			if l.ID == id {
				nodes = append(nodes, GraphNodeView{ID: id, Locker: id, Class: "locker", Node: l.Node, PID: l.PID, Waiting: true})
				have[id] = true
			}
		}
	}
	out := graphSVG{Nodes: []gNode{}, Edges: []gEdge{}, Notes: []string{}}
	waitsFor := map[int64]bool{}
	for _, e := range g.Edges {
		waitsFor[e.From] = true
	}
	for _, id := range v.Verdict.Lockers {
		if !waitsFor[id] {
			out.Notes = append(out.Notes, fmt.Sprintf("Locker %d is waiting, yet no other owner holds what it asks for: it has no arrow.", id))
		}
	}
	if len(nodes) == 0 {
		out.Empty = true
		return out
	}
	at := layout(nodes, g)
	hot := map[int64]bool{}
	for _, id := range v.Verdict.Lockers {
		hot[id] = true
	}
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, n := range nodes {
		p := at[n.ID]
		minX, maxX = math.Min(minX, p.x), math.Max(maxX, p.x)
		minY, maxY = math.Min(minY, p.y), math.Max(maxY, p.y)
		cls := []string{"gn"}
		if n.Locker < 0 {
			cls = append(cls, "foreign")
		}
		if n.InCycle {
			cls = append(cls, "cycle")
		}
		if hot[n.ID] && n.Locker >= 0 {
			cls = append(cls, "hot")
		}
		l1, l2 := nodeLines(n)
		state := []string{}
		if n.Waiting {
			state = append(state, "waiting")
		}
		if n.Holding {
			state = append(state, "holding")
		}
		out.Nodes = append(out.Nodes, gNode{X: f1(p.x - gNodeW/2), Y: f1(p.y - gNodeH/2), W: f1(gNodeW), H: f1(gNodeH),
			TX: f1(p.x), TY: f1(p.y - 3), Line1: l1, Line2: l2, Class: strings.Join(cls, " "),
			Title: l1 + ", " + l2 + ": " + strings.Join(state, " and ")})
	}
	files := map[string]bool{}
	for _, e := range g.Edges {
		files[e.File] = true
	}
	edges := append([]GraphEdgeView(nil), g.Edges...)
	sort.SliceStable(edges, func(i, j int) bool { return edges[i].InCycle && !edges[j].InCycle })
	if len(edges) > gMaxEdges {
		out.Omitted = len(edges) - gMaxEdges
		edges = edges[:gMaxEdges]
	}
	pair := map[[2]int64]bool{}
	for _, e := range edges {
		pair[[2]int64{e.From, e.To}] = true
	}
	for _, e := range edges {
		a, okA := at[e.From]
		b, okB := at[e.To]
		if !okA || !okB || e.From == e.To {
			continue
		}
		label := e.Kind + " " + e.Mode + " " + e.Range
		if len(files) > 1 {
			label += " " + path.Base(e.File)
		}
		ge := gEdge{Class: "ge", Title: fmt.Sprintf("waits for a %s %s lock on %s of %s since %s (seen by %s)",
			e.Kind, e.Mode, e.Range, cmp.Or(e.Path, e.File), rel(e.SinceNS, v.Run.StartNS), strings.Join(e.Sources, ", "))}
		if e.InCycle {
			ge.Class += " cycle"
		}
		if len(edges) <= gMaxLabels {
			ge.Label = label
		} else {
			ge.Title = label + ": " + ge.Title
		}
		bend := 0.0
		if pair[[2]int64{e.To, e.From}] {
			bend = 34
		}
		ge.D, ge.LX, ge.LY = edgePath(a, b, bend)
		out.Edges = append(out.Edges, ge)
	}
	x0, y0 := minX-gNodeW/2-gMargin, minY-gNodeH/2-gMargin
	w, h := maxX-minX+gNodeW+2*gMargin, maxY-minY+gNodeH+2*gMargin
	out.ViewBox = fmt.Sprintf("%s %s %s %s", f1(x0), f1(y0), f1(w), f1(h))
	out.W, out.H = f1(w), f1(h)
	if out.Omitted > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("%d more edges are in waitfor.dot.", out.Omitted))
	}
	return out
}

func nodeLines(n GraphNodeView) (string, string) {
	node := n.Node
	if node == "" {
		node = "?"
	}
	if n.Locker >= 0 {
		return fmt.Sprintf("locker %d", n.Locker), fmt.Sprintf("pid %d · %s", n.PID, node)
	}
	if n.PID <= 0 {
		// OFD locks, NFSv4 and NFSv3 report no usable pid (-1, 0, a negative svid).
		return fmt.Sprintf("%s owner", n.Class), fmt.Sprintf("no pid (%d) · %s", n.PID, node)
	}
	return fmt.Sprintf("%s owner", n.Class), fmt.Sprintf("pid %d · %s", n.PID, node)
}

// layout puts the members of cycles on an inner circle in cycle order, and every other owner on
// an outer ring next to the owners it is connected to. Without a cycle, all go on one circle.
func layout(nodes []GraphNodeView, g GraphView) map[int64]pt {
	byID := map[int64]GraphNodeView{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	placed := map[int64]bool{}
	inner := []int64{}
	add := func(id int64) {
		if _, ok := byID[id]; ok && !placed[id] {
			placed[id] = true
			inner = append(inner, id)
		}
	}
	for i, c := range g.Cycles {
		for _, id := range c {
			add(id)
		}
		if i < len(g.SCCs) {
			for _, id := range g.SCCs[i] {
				add(id)
			}
		}
	}
	for _, n := range nodes {
		if n.InCycle {
			add(n.ID)
		}
	}
	outer := []int64{}
	for _, n := range nodes {
		if !placed[n.ID] {
			outer = append(outer, n.ID)
		}
	}
	sort.Slice(outer, func(i, j int) bool { return outer[i] < outer[j] })
	at := map[int64]pt{}
	if len(inner) == 0 {
		for i, p := range circlePositions(len(outer)) {
			at[outer[i]] = p
		}
		return at
	}
	angle := map[int64]float64{}
	for i, p := range circlePositions(len(inner)) {
		at[inner[i]] = p
		angle[inner[i]] = math.Atan2(p.y, p.x)
	}
	r1 := math.Hypot(at[inner[0]].x, at[inner[0]].y)
	r2 := r1 + 170
	// Each outer owner goes at the mean angle of the inner owners it touches.
	want := make([]float64, len(outer))
	for i, id := range outer {
		var sx, sy float64
		for _, e := range g.Edges {
			other := int64(-1 << 62)
			if e.From == id {
				other = e.To
			} else if e.To == id {
				other = e.From
			}
			if a, ok := angle[other]; ok {
				sx, sy = sx+math.Cos(a), sy+math.Sin(a)
			}
		}
		want[i] = math.Pi / 2 // below the circle when it touches no inner owner, or all evenly
		if math.Hypot(sx, sy) > 1e-6 {
			want[i] = math.Atan2(sy, sx)
		}
	}
	idx := make([]int, len(outer))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return want[idx[a]] < want[idx[b]] })
	gap := (gNodeW + 30) / r2
	if float64(len(outer))*gap > 2*math.Pi {
		r2 = float64(len(outer)) * (gNodeW + 30) / (2 * math.Pi)
		gap = (gNodeW + 30) / r2
	}
	prev := math.Inf(-1)
	for _, i := range idx {
		a := math.Max(want[i], prev+gap)
		prev = a
		at[outer[i]] = pt{r2 * math.Cos(a), r2 * math.Sin(a)}
	}
	return at
}

// circlePositions places n boxes clockwise on a circle large enough that neighbours do not touch.
func circlePositions(n int) []pt {
	if n == 1 {
		return []pt{{0, 0}}
	}
	r := math.Max(175, float64(n)*(gNodeW+24)/(2*math.Pi))
	start := -math.Pi / 2
	if n == 2 {
		start = math.Pi
		r = 170
	}
	out := make([]pt, n)
	for i := range out {
		a := start + 2*math.Pi*float64(i)/float64(n)
		out[i] = pt{r * math.Cos(a), r * math.Sin(a)}
	}
	return out
}

// edgePath is a straight or (for a pair of opposite edges) bent arrow between two boxes, and
// where its label goes.
func edgePath(a, b pt, bend float64) (d, lx, ly string) {
	dx, dy := b.x-a.x, b.y-a.y
	l := math.Hypot(dx, dy)
	if l == 0 {
		l = 1
	}
	// control point: the midpoint moved to the right of a→b
	c := pt{(a.x+b.x)/2 - dy/l*bend, (a.y+b.y)/2 + dx/l*bend}
	s := boxExit(a, c)
	e := boxExit(b, c)
	// the label sits a third of the way from the waiter, so opposite edges keep theirs apart
	const u = 0.36
	mid := pt{(1-u)*(1-u)*s.x + 2*u*(1-u)*c.x + u*u*e.x, (1-u)*(1-u)*s.y + 2*u*(1-u)*c.y + u*u*e.y}
	d = fmt.Sprintf("M%s %sQ%s %s %s %s", f1(s.x), f1(s.y), f1(c.x), f1(c.y), f1(e.x), f1(e.y))
	return d, f1(mid.x), f1(mid.y - 4)
}

// boxExit is where the ray from a box's centre towards p leaves the box (plus a little air).
func boxExit(center, p pt) pt {
	dx, dy := p.x-center.x, p.y-center.y
	hw, hh := gNodeW/2+4, gNodeH/2+4
	t := math.Inf(1)
	if dx != 0 {
		t = math.Min(t, hw/math.Abs(dx))
	}
	if dy != 0 {
		t = math.Min(t, hh/math.Abs(dy))
	}
	if math.IsInf(t, 1) {
		return center
	}
	return pt{center.x + dx*t, center.y + dy*t}
}
