package analysis

import (
	"fmt"
	"io"
	"strconv"

	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/encoding"
	"gonum.org/v1/gonum/graph/encoding/dot"
	"gonum.org/v1/gonum/graph/simple"
)

// dotNode is a GraphNode as gonum's DOT encoder wants it.
type dotNode struct {
	n       GraphNode
	inCycle bool
}

func (d dotNode) ID() int64 { return d.n.ID }

func (d dotNode) DOTID() string {
	if d.n.Locker >= 0 {
		return "L" + strconv.FormatInt(d.n.Locker, 10)
	}
	return fmt.Sprintf("%s_%d", d.n.Class, d.n.ID-foreignBase)
}

func (d dotNode) Attributes() []encoding.Attribute {
	attrs := []encoding.Attribute{{Key: "label", Value: d.n.Label}}
	switch {
	case d.inCycle:
		attrs = append(attrs, encoding.Attribute{Key: "color", Value: "red"}, encoding.Attribute{Key: "penwidth", Value: "2"})
	case d.n.Locker < 0:
		attrs = append(attrs, encoding.Attribute{Key: "shape", Value: "box"}, encoding.Attribute{Key: "style", Value: "dashed"})
	}
	return attrs
}

// dotEdge is a GraphEdge as gonum's DOT encoder wants it.
type dotEdge struct {
	from, to dotNode
	e        GraphEdge
	inCycle  bool
}

func (d dotEdge) From() graph.Node         { return d.from }
func (d dotEdge) To() graph.Node           { return d.to }
func (d dotEdge) ReversedEdge() graph.Edge { d.from, d.to = d.to, d.from; return d }

func (d dotEdge) Attributes() []encoding.Attribute {
	attrs := []encoding.Attribute{{Key: "label", Value: d.e.Label}}
	if d.inCycle {
		attrs = append(attrs, encoding.Attribute{Key: "color", Value: "red"}, encoding.Attribute{Key: "penwidth", Value: "2"})
	}
	return attrs
}

// WriteDOT writes the graph in Graphviz DOT, the edges of its cycles in red.
func WriteDOT(w io.Writer, g *WaitGraph) error {
	if g == nil {
		g = &WaitGraph{}
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
		d := dotNode{n: n, inCycle: inCycle[n.ID]}
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
