package lockmodel

import (
	"testing"

	"github.com/lockprobe/lockprobe/semconv"
)

func req(kind semconv.Kind, mode semconv.Mode, start, length int64) Request {
	return Request{Kind: kind, Mode: mode, Start: start, Len: length}
}

func TestConflict(t *testing.T) {
	const (
		posix, ofd, flock = semconv.KindPOSIX, semconv.KindOFD, semconv.KindFlock
		r, w, none        = semconv.ModeRead, semconv.ModeWrite, semconv.ModeNone
	)
	shared := Semantics{FlockWithFcntl: true}
	tests := []struct {
		name          string
		a, b          Request
		local, shared bool
	}{
		{"two readers", req(posix, r, 0, 0), req(posix, r, 0, 0), false, false},
		{"reader and writer", req(posix, r, 0, 10), req(posix, w, 5, 1), true, true},
		{"writers side by side", req(posix, w, 0, 10), req(posix, w, 10, 10), false, false},
		{"writer to EOF and a far byte", req(posix, w, 100, 0), req(ofd, w, 1<<40, 1), true, true},
		{"posix and ofd share a table", req(posix, w, 0, 1), req(ofd, r, 0, 1), true, true},
		{"two flocks, ranges ignored", req(flock, w, 7, 1), req(flock, r, 0, 1), true, true},
		{"flock and posix", req(flock, w, 0, 0), req(posix, w, 1, 1), false, true},
		{"posix and flock reader", req(posix, w, 5, 1), req(flock, r, 0, 0), false, true},
		{"ofd reader and flock reader", req(ofd, r, 0, 0), req(flock, r, 0, 0), false, false},
		{"an unlock conflicts with nothing", req(posix, none, 0, 0), req(posix, w, 0, 0), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				sem  Semantics
				want bool
			}{{Local, tt.local}, {shared, tt.shared}} {
				if got := c.sem.Conflict(tt.a, tt.b); got != c.want {
					t.Errorf("%+v: Conflict(%v, %v) = %v, want %v", c.sem, tt.a, tt.b, got, c.want)
				}
				if got := c.sem.Conflict(tt.b, tt.a); got != c.want {
					t.Errorf("%+v: not symmetric: Conflict(%v, %v) = %v", c.sem, tt.b, tt.a, got)
				}
			}
		})
	}
}

func TestRequestRange(t *testing.T) {
	if e := req(semconv.KindPOSIX, semconv.ModeRead, 3, 0).To(); e != EOF {
		t.Errorf("length 0 ends at %d, want EOF", e)
	}
	if f := req(semconv.KindFlock, semconv.ModeRead, 3, 4); f.From() != 0 || f.To() != EOF {
		t.Errorf("flock covers [%d, %d), want the whole file", f.From(), f.To())
	}
	if !req(semconv.KindPOSIX, semconv.ModeRead, 0, 5).Overlaps(req(semconv.KindPOSIX, semconv.ModeRead, 4, 1)) ||
		req(semconv.KindPOSIX, semconv.ModeRead, 0, 5).Overlaps(req(semconv.KindPOSIX, semconv.ModeRead, 5, 1)) {
		t.Error("[0, 5) overlaps [4, 5) and not [5, 6)")
	}
}

func TestOwner(t *testing.T) {
	// Two nodes on one host's mounts (n1, n2: pids unique) and a cluster node c3 whose pids
	// collide with n1's.
	table := NewProcesses(
		Process{Locker: 0, Node: "n1", Host: "h", PID: 100, TIDs: []int64{101}},
		Process{Locker: 1, Node: "n2", Host: "h", PID: 200},
		Process{Locker: 2, Node: "c3", Host: "c3", PID: 100},
		Process{Locker: 3, Node: "c3", Host: "c3", PID: 300},
		Process{Locker: -1, Node: "n1", Host: "h", PID: 400, Command: "python3 table.py"},
	)
	table.Add(Process{Locker: 1, Node: "n2", TIDs: []int64{201, 201}}) // the snapshot's thread id
	holds := func(ids ...int64) func(p *Process) bool {
		return func(p *Process) bool {
			for _, id := range ids {
				if p.Locker == id {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name   string
		q      Query
		class  semconv.OwnerClass
		locker int64
		node   string
	}{
		{"the answering node's pid", Query{Node: "n1", PID: 100, Asker: 1}, semconv.OwnerLocker, 0, "n1"},
		{"the answering node by host name", Query{Node: "c3", PID: 100, Asker: 1}, semconv.OwnerLocker, 2, "c3"},
		{"a lock thread's id", Query{Node: "n2", PID: 101, Asker: 1}, semconv.OwnerLocker, 0, "n1"},
		{"a thread id the snapshot added", Query{Node: "n1", PID: 201, Asker: 0}, semconv.OwnerLocker, 1, "n2"},
		{"the only one of any node", Query{Node: "n1", PID: 300, Asker: 0}, semconv.OwnerLocker, 3, "c3"},
		{"the asker's own pid", Query{Node: "n1", PID: 100, Asker: 0}, semconv.OwnerSelf, 0, "n1"},
		{"the asker's own thread", Query{Node: "n1", PID: 101, Asker: 0}, semconv.OwnerSelf, 0, "n1"},
		{"a pid of two other nodes", Query{Node: "n2", PID: 100, Asker: 1}, semconv.OwnerUnknown, -1, ""},
		{"a pid of two other nodes, one holds", Query{Node: "n2", PID: 100, Asker: 1, Holds: holds(2)}, semconv.OwnerLocker, 2, "c3"},
		{"a colliding pid: the holder wins over the local one", Query{Node: "n1", PID: 100, Asker: 3, Holds: holds(2)}, semconv.OwnerLocker, 2, "c3"},
		{"nobody holds: the rule without evidence", Query{Node: "n1", PID: 100, Asker: 3, Holds: holds()}, semconv.OwnerLocker, 0, "n1"},
		{"a pid of nobody", Query{Node: "n2", PID: 999, Asker: 1}, semconv.OwnerForeign, -1, "n2"},
		{"a known program", Query{Node: "n1", PID: 400, Asker: 0}, semconv.OwnerForeign, -1, "n1"},
		{"no pid (OFD)", Query{Node: "n1", PID: -1, Asker: 0}, semconv.OwnerUnknown, -1, ""},
		{"no pid (NFSv4)", Query{Node: "n1", PID: 0, Asker: 0}, semconv.OwnerUnknown, -1, ""},
		{"pid 0: no such process on the answering node; the one holder elsewhere", Query{Node: "c3", PID: 0, Asker: 3, Holds: holds(0)}, semconv.OwnerLocker, 0, "n1"},
		{"pid 0: nobody holds", Query{Node: "c3", PID: 0, Asker: 3, Holds: holds()}, semconv.OwnerUnknown, -1, ""},
		{"pid 0: two hold elsewhere", Query{Node: "c3", PID: 0, Asker: 3, Holds: holds(0, 1)}, semconv.OwnerUnknown, -1, ""},
		{"pid 0: the holder is on the answering node, which would have named it", Query{Node: "c3", PID: 0, Asker: 3, Holds: holds(2)}, semconv.OwnerUnknown, -1, ""},
		{"the waiter's own pid number, held on another node", Query{Node: "c3", PID: 100, Asker: 2, Holds: holds(0)}, semconv.OwnerLocker, 0, "n1"},
		{"an observer asking", Query{Node: "n2", PID: 200, Asker: -1}, semconv.OwnerLocker, 1, "n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := table.Owner(tt.q)
			if o.Class != tt.class || o.Locker() != tt.locker || o.Node != tt.node {
				t.Errorf("Owner(%+v) = %s locker %d node %q, want %s locker %d node %q", tt.q, o.Class, o.Locker(), o.Node, tt.class, tt.locker, tt.node)
			}
		})
	}
	if o := table.Owner(Query{Node: "n1", PID: 400}); o.Process == nil || o.Process.Command != "python3 table.py" {
		t.Errorf("a process that is no locker keeps its command line: %+v", o.Process)
	}
	if got := len(table.List()); got != 5 {
		t.Errorf("%d processes, want 5: adding a locker again merges its thread ids", got)
	}
}

// TestOwnerOrder is the case the reports' own copy of the rule got wrong: a pid shared by
// lockers of other nodes before the one of the answering node.
func TestOwnerOrder(t *testing.T) {
	table := NewProcesses(
		Process{Locker: 0, Node: "a", PID: 7},
		Process{Locker: 1, Node: "b", PID: 7},
		Process{Locker: 2, Node: "c", PID: 7},
	)
	if o := table.Owner(Query{Node: "c", PID: 7, Asker: -1}); o.Locker() != 2 {
		t.Errorf("pid 7 on node c = locker %d, want 2", o.Locker())
	}
	var empty Processes
	if o := empty.Owner(Query{Node: "a", PID: 7}); o.Class != semconv.OwnerForeign {
		t.Errorf("an empty table: %s, want foreign", o.Class)
	}
}
