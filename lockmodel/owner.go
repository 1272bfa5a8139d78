package lockmodel

import (
	"slices"

	"github.com/lockprobe/lockprobe/semconv"
)

// Process is a process that a pid reported as a lock's owner may name: a locker of the run, or
// a process that is none (a program lockprobe traces or watches, named by its command line).
type Process struct {
	Locker  int64   // the run's locker id; -1 for a process that is no locker
	Node    string  // the node it runs on (a host name, or a mount's label in a multi-mount run)
	Host    string  // its host name, when Node is a label
	PID     int64   // its process id on its node
	TIDs    []int64 // threads that make lock calls: FUSE file systems name a holder by its thread
	Command string  // its command line, for a process that is no locker
}

// on reports whether the process runs on node, by node label or host name.
func (p *Process) on(node string) bool {
	return node != "" && (p.Node == node || p.Host == node)
}

// Processes is the table reported pids are looked up in. The zero value is an empty table.
type Processes struct {
	list  []Process
	byID  map[int64][]int // pid or thread id → indexes into list
	byKey map[procKey]int // what Add matches on → index into list
}

// procKey is what makes a process the same one for Add: its locker id, or for one that is no
// locker its node and pid. (Add looked it up by scanning the list: a thousand lockers each
// building the peer table of a thousand paid half a million comparisons.)
type procKey struct {
	locker int64
	node   string
	pid    int64
}

func keyOf(p Process) procKey {
	if p.Locker >= 0 {
		return procKey{locker: p.Locker}
	}
	return procKey{locker: p.Locker, node: p.Node, pid: p.PID}
}

// NewProcesses returns a table of ps.
func NewProcesses(ps ...Process) *Processes {
	t := &Processes{}
	for _, p := range ps {
		t.Add(p)
	}
	return t
}

// Add puts p into the table; a process added again under the same locker id (or, for one that is
// no locker, the same node and pid) gains the new thread ids instead.
func (t *Processes) Add(p Process) {
	if t.byID == nil {
		t.byID, t.byKey = map[int64][]int{}, map[procKey]int{}
	}
	k := keyOf(p)
	i, ok := t.byKey[k]
	if !ok {
		i = len(t.list)
		t.byKey[k] = i
		t.list = append(t.list, Process{Locker: p.Locker, Node: p.Node, Host: p.Host, PID: p.PID, Command: p.Command})
		t.index(p.PID, i)
	}
	for _, tid := range p.TIDs {
		if tid > 0 && !slices.Contains(t.list[i].TIDs, tid) {
			t.list[i].TIDs = append(t.list[i].TIDs, tid)
			t.index(tid, i)
		}
	}
}

func (t *Processes) index(id int64, i int) {
	if id > 0 && !slices.Contains(t.byID[id], i) {
		t.byID[id] = append(t.byID[id], i)
	}
}

// List returns the processes in the order they were added. The caller must not change them.
func (t *Processes) List() []Process { return t.list }

// Query is a pid that a file system (F_GETLK, /proc/locks) reported as the owner of a lock.
type Query struct {
	Node  string // the node whose file system gave the answer
	PID   int64  // the pid (or thread id) it named; ≤ 0 names nobody (OFD's -1, NFSv4's 0, NFSv3's svid)
	Asker int64  // the locker that asked, whose own pid names itself (OwnerSelf); -1 for none
	// Holds, when not nil, says whether a candidate holds the lock the answer describes, by its
	// own records or by what an observer saw. Lustre and GlusterFS report a holder's pid as it is
	// on the holder's node, so a pid may stand for processes of several nodes; the ones that
	// hold the lock come first.
	Holds func(p *Process) bool
}

// Owner is whom a reported pid names.
type Owner struct {
	Class semconv.OwnerClass // OwnerLocker, OwnerSelf, OwnerForeign or OwnerUnknown
	// Process is the process named, when the table knows it: a locker (Class locker or self) or a
	// process that is no locker (Class foreign, Process.Locker -1). Nil for a pid the table does
	// not know, or one it cannot decide between.
	Process *Process
	Node    string // the owner's node when known: the process's, or for a pid matching nothing, the answering node's
}

// Owner decides whom a reported pid names. Among the processes with that pid (or thread id),
// those that hold the lock win when the query says which do; then the one on the answering node
// (a pid names a process on its own node); then the only one of any node (a run's nodes may be
// mounts on one host, where pids are unique). A pid matching nobody is a foreign owner on the
// answering node; one shared by several processes and not decided is unknown, as is no pid.
//
// Pid 0 is what a node's kernel answers for a holder whose pid no process of that node has (FUSE
// reads the server's pid in the mounting node's pid namespace): the holder is on another node.
// When the query says who holds the lock, the one locker of another node holding it is the
// owner.
func (t *Processes) Owner(q Query) Owner {
	if q.PID == 0 && q.Holds != nil {
		if p := t.onlyHolderElsewhere(q); p != nil {
			return Owner{Class: semconv.OwnerLocker, Process: p, Node: p.Node}
		}
	}
	if q.PID <= 0 {
		return Owner{Class: semconv.OwnerUnknown}
	}
	cands := t.byID[q.PID]
	if q.Holds != nil && len(cands) > 1 { // evidence picks among several; one is the pick anyway
		var held []int
		for _, i := range cands {
			if q.Holds(&t.list[i]) {
				held = append(held, i)
			}
		}
		if len(held) > 0 {
			cands = held
		}
	}
	pick := -1
	for _, i := range cands {
		if t.list[i].on(q.Node) {
			pick = i
			break
		}
	}
	if pick < 0 && len(cands) == 1 {
		pick = cands[0]
	}
	switch {
	case pick >= 0:
		p := &t.list[pick]
		o := Owner{Class: semconv.OwnerLocker, Process: p, Node: p.Node}
		switch {
		case p.Locker < 0:
			o.Class = semconv.OwnerForeign
		case p.Locker == q.Asker:
			o.Class = semconv.OwnerSelf
		}
		return o
	case len(cands) == 0:
		return Owner{Class: semconv.OwnerForeign, Node: q.Node}
	}
	return Owner{Class: semconv.OwnerUnknown}
}

// onlyHolderElsewhere returns the one locker, not the asker and not on the answering node, that
// holds the lock the query describes; nil when none or several do.
func (t *Processes) onlyHolderElsewhere(q Query) *Process {
	var found *Process
	for i := range t.list {
		p := &t.list[i]
		if p.Locker < 0 || p.Locker == q.Asker || p.on(q.Node) || !q.Holds(p) {
			continue
		}
		if found != nil {
			return nil
		}
		found = p
	}
	return found
}

// Locker returns the locker id the owner names, or -1.
func (o Owner) Locker() int64 {
	if o.Process == nil {
		return -1
	}
	return o.Process.Locker
}
