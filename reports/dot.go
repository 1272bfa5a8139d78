package reports

import (
	"fmt"
	"io"
	"strconv"

	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/encoding"
	"gonum.org/v1/gonum/graph/encoding/dot"
	"gonum.org/v1/gonum/graph/simple"

	"github.com/lockprobe/lockprobe/analysis"
)

// dotNode is a graph node as gonum's DOT encoder wants it.
type dotNode struct {
	n       analysis.GraphNode
	label   string
	inCycle bool
}

func (d dotNode) ID() int64 { return d.n.ID }

func (d dotNode) DOTID() string {
	if d.n.Locker >= 0 {
		return "L" + strconv.FormatInt(d.n.Locker, 10)
	}
	return fmt.Sprintf("%s_%d", d.n.Class, d.n.ID-analysis.ForeignBase)
}

func (d dotNode) Attributes() []encoding.Attribute {
	attrs := []encoding.Attribute{{Key: "label", Value: d.label}}
	switch {
	case d.inCycle:
		attrs = append(attrs, encoding.Attribute{Key: "color", Value: "red"}, encoding.Attribute{Key: "penwidth", Value: "2"})
	case d.n.Locker < 0:
		attrs = append(attrs, encoding.Attribute{Key: "shape", Value: "box"}, encoding.Attribute{Key: "style", Value: "dashed"})
	}
	return attrs
}

// dotEdge is a graph edge as gonum's DOT encoder wants it.
type dotEdge struct {
	from, to dotNode
	e        analysis.GraphEdge
	inCycle  bool
}

func (d dotEdge) From() graph.Node         { return d.from }
func (d dotEdge) To() graph.Node           { return d.to }
func (d dotEdge) ReversedEdge() graph.Edge { d.from, d.to = d.to, d.from; return d }

func (d dotEdge) Attributes() []encoding.Attribute {
	attrs := []encoding.Attribute{{Key: "label", Value: edgeLabel(d.e)}}
	if d.inCycle {
		attrs = append(attrs, encoding.Attribute{Key: "color", Value: "red"}, encoding.Attribute{Key: "penwidth", Value: "2"})
	}
	return attrs
}

// DOT writes waitfor.dot: the wait-for graph of res in Graphviz DOT, the edges of its cycles
// in red. A nil result, or one without a graph, gives an empty graph.
func DOT(w io.Writer, res *analysis.Result) error {
	g := &analysis.WaitGraph{}
	var names namer
	if res != nil {
		names = newNamer(res.Lockers)
		if res.Graph != nil {
			g = res.Graph
		}
	}
	inCycle := map[int64]bool{}
	cycleEdge := map[[2]int64]bool{}
	for _, c := range g.Cycles {
		for i, id := range c {
			inCycle[id] = true
			cycleEdge[[2]int64{id, c[(i+1)%len(c)]}] = true
		}
	}
	dg := simple.NewDirectedGraph()
	nodes := map[int64]dotNode{}
	for _, n := range g.Nodes {
		d := dotNode{n: n, label: names.nodeLabel(n), inCycle: inCycle[n.ID]}
		nodes[n.ID] = d
		dg.AddNode(d)
	}
	for _, e := range g.Edges {
		from, okf := nodes[e.From]
		to, okt := nodes[e.To]
		if !okf || !okt || e.From == e.To {
			continue
		}
		dg.SetEdge(dotEdge{from: from, to: to, e: e, inCycle: cycleEdge[[2]int64{e.From, e.To}]})
	}
	b, err := dot.Marshal(dg, "waitfor", "", "  ")
	if err != nil {
		return fmt.Errorf("encode wait-for graph: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write wait-for graph: %w", err)
	}
	return nil
}
