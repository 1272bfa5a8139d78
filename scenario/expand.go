package scenario

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lockprobe/lockprobe/proto"
)

// Placement says on which node each locker runs, for node=K targets.
type Placement struct {
	// Nodes is how many nodes the run has.
	Nodes int
	// Node holds locker i's node (0..Nodes-1). Optional: locker i on node i % Nodes.
	Node []int
}

func (pl Placement) nodeOf(id int) int {
	if id < len(pl.Node) {
		return pl.Node[id]
	}
	return id % max(pl.Nodes, 1)
}

// Queues expands the scenario for procs lockers: queue i holds, in file order, the commands
// whose targets include locker i, with {file} (files[i % len(files)]), {id}, {next} and {last}
// resolved. Each file is a node (node=K names the lockers of files[K]). A target that names a
// locker >= procs or a node past the last, a {file} with no files, and a command after a
// locker's stop are errors at the statement's position.
func (s *Scenario) Queues(procs int, files []string) ([][]proto.Command, error) {
	return s.QueuesOn(procs, files, Placement{Nodes: max(len(files), 1)})
}

// QueuesOn is Queues with the lockers placed on nodes as pl says (a run across the nodes of a
// cluster, where every node sees the file at the same path).
func (s *Scenario) QueuesOn(procs int, files []string, pl Placement) ([][]proto.Command, error) {
	if procs < 1 || procs > MaxProcs {
		return nil, fmt.Errorf("scenario %s: %d lockers is not from 1 to %d", s.Name, procs, MaxProcs)
	}
	if pl.Node != nil && len(pl.Node) != procs {
		return nil, fmt.Errorf("scenario %s: placement of %d lockers for %d", s.Name, len(pl.Node), procs)
	}
	queues := make([][]proto.Command, procs)
	stopped := make([]int, procs) // line of the locker's stop, 0 if none yet
	member := make([]bool, procs)
	for i := range s.stmts {
		st := &s.stmts[i]
		if err := s.mark(st, procs, pl, member); err != nil {
			return nil, err
		}
		for id, in := range member {
			if !in {
				continue
			}
			if stopped[id] != 0 {
				return nil, s.errAt(st, st.col, "locker %d already stopped at line %d", id, stopped[id])
			}
			c, err := s.resolve(st, id, procs, files)
			if err != nil {
				return nil, err
			}
			queues[id] = append(queues[id], c)
			if c.Op == proto.OpStop {
				stopped[id] = st.line
			}
		}
	}
	return queues, nil
}

func (s *Scenario) errAt(st *stmt, col int, format string, args ...any) error {
	for i, a := range args {
		if str, ok := a.(string); ok {
			args[i] = cut(str)
		}
	}
	return &Error{Name: s.Name, Line: st.line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// mark sets member[i] for the lockers st targets.
func (s *Scenario) mark(st *stmt, procs int, pl Placement, member []bool) error {
	if st.targets == nil {
		for i := range member {
			member[i] = true
		}
		return nil
	}
	clear(member)
	for _, it := range st.targets {
		lo, hi := it.lo.resolve(0, procs), it.hi.resolve(0, procs)
		if it.node {
			if hi >= int64(pl.Nodes) {
				if pl.Nodes == 1 {
					return s.errAt(st, it.col, "target names node %d but the run has one node (0)", hi)
				}
				return s.errAt(st, it.col, "target names node %d but there are only %d nodes (0-%d)", hi, pl.Nodes, pl.Nodes-1)
			}
			for id := range member {
				if k := int64(pl.nodeOf(id)); k >= lo && k <= hi {
					member[id] = true
				}
			}
			continue
		}
		if it.hi.t == tmplLast && lo > hi {
			continue // N-{last} is empty when N is past the last locker
		}
		if hi >= int64(procs) {
			return s.errAt(st, it.col, "target names locker %d but there are only %d lockers (0-%d)", hi, procs, procs-1)
		}
		for i := lo; i <= hi; i++ {
			member[i] = true
		}
	}
	return nil
}

// resolve makes locker id's command from a statement.
func (s *Scenario) resolve(st *stmt, id, procs int, files []string) (proto.Command, error) {
	c := st.cmd
	c.Line, c.Text = st.line, st.text
	if st.hasRange {
		c.Start, c.Len = st.start.resolve(id, procs), st.length.resolve(id, procs)
	}
	if c.Op == proto.OpFile {
		p, err := expandPath(st.path, id, procs, files)
		if err != nil {
			return c, s.errAt(st, st.col, "%v", err)
		}
		c.Path = p
	}
	if err := c.Validate(); err != nil {
		return c, s.errAt(st, st.col, "locker %d: %v", id, err)
	}
	return c, nil
}

// expandPath replaces the template words of a path (checked by the parser).
func expandPath(path string, id, procs int, files []string) (string, error) {
	if !strings.Contains(path, "{") {
		return path, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			b.WriteString(path)
			return b.String(), nil
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unclosed '{' in path %q", path)
		}
		b.WriteString(path[:i])
		switch w := path[i : i+j+1]; tmplWords[w] {
		case tmplFile:
			if len(files) == 0 {
				return "", fmt.Errorf("{file} in path but no file was given")
			}
			b.WriteString(files[id%len(files)])
		case tmplID, tmplNext, tmplLast:
			b.WriteString(strconv.FormatInt(numTmpl{t: tmplWords[w]}.resolve(id, procs), 10))
		default:
			return "", fmt.Errorf("unknown template %q in path", w)
		}
		path = path[i+j+1:]
	}
}

// Format renders queues for reading and for golden tests: one block per locker, one command per
// line with its scenario line number, in the scenario language (proto.Command.String).
func Format(queues [][]proto.Command) string {
	var b strings.Builder
	for id, q := range queues {
		fmt.Fprintf(&b, "locker %d\n", id)
		for _, c := range q {
			fmt.Fprintf(&b, "  %3d  %s\n", c.Line, c.String())
		}
	}
	return b.String()
}
