package analysis

import (
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// indexPIDs builds the owner rule's table of the lockers, by process and thread ids. FUSE file
// systems name a lock's owner by the thread that made the call (GlusterFS records the caller's
// thread id on the brick, and a restarted request comes back with it as l_pid), so the lock
// thread's id (process.tid on the locker's resource, or in the snapshot) names the locker as
// well as its pid.
func (m *model) indexPIDs() {
	m.procs = &lockmodel.Processes{}
	for _, l := range m.lockers {
		m.procs.Add(lockmodel.Process{Locker: l.ID, Node: l.Node, Host: l.Host, PID: l.PID, TIDs: []int64{l.TID}, Command: l.Command})
	}
	for _, st := range m.states {
		l, ok := m.byID[st.Locker]
		if !ok || st.TID <= 0 {
			continue
		}
		if l.TID == 0 {
			l.TID = st.TID
		}
		m.procs.Add(lockmodel.Process{Locker: l.ID, Node: l.Node, Host: l.Host, PID: l.PID, TIDs: []int64{st.TID}})
	}
}

// owner applies the owner rule to a pid reported on node, asked by locker asker (-1: none).
func (m *model) owner(node string, pid, asker int64) lockmodel.Owner {
	return m.procs.Owner(lockmodel.Query{Node: node, PID: pid, Asker: asker})
}

// mapOwners names the lockers behind owners a locker could not map (traces written before
// lockers shared their lock thread's id with their peers class an owner named by a thread id
// foreign), and re-decides every owner with the evidence of the holds: Lustre and GlusterFS
// give a holder's pid as it is on its own node, so a pid may stand for lockers of several nodes
// (the waiter's own number among them), and the locker's first guess (the one of its own node)
// may hold nothing there; the one that held such a lock at that instant is the owner. A pid of
// 0 is a holder no process of the answering node has: the one locker of another node that held
// it. It also names the locker of each /proc/locks
// line.
func (m *model) mapOwners() {
	remap := func(o *Owner, self int64, file string, at int64) {
		if o.PID < 0 || o.PID == 0 && o.Class != semconv.OwnerUnknown {
			return // no pid (OFD's -1), or nothing conflicts
		}
		mapped := o.Locker >= 0 && (o.Class == semconv.OwnerLocker || o.Class == semconv.OwnerSelf)
		if !mapped && o.Class != semconv.OwnerForeign && o.Class != semconv.OwnerUnknown {
			return
		}
		w := m.procs.Owner(lockmodel.Query{Node: o.Node, PID: o.PID, Asker: self, Holds: m.holding(file, at, *o)})
		if id := w.Locker(); id >= 0 {
			o.Locker, o.Class, o.Node = id, w.Class, w.Node
		}
	}
	for _, a := range m.attempts {
		for i := range a.Conflicts {
			remap(&a.Conflicts[i].Owner, a.Locker, a.File, a.Conflicts[i].At)
		}
	}
	for i := range m.obs {
		remap(&m.obs[i].Owner, -1, m.obs[i].File, m.obs[i].At)
	}
	for _, g := range m.getlks {
		remap(&g.Owner, g.Locker, g.File, g.At)
	}
	for i := range m.plocks {
		p := &m.plocks[i]
		p.Locker = m.owner(p.Node, p.PID, -1).Locker()
	}
}

// holding says whether a locker held, at instant at, a lock on file of the owner's mode over the
// owner's range: the evidence that picks among lockers sharing a pid.
func (m *model) holding(file string, at int64, o Owner) func(p *lockmodel.Process) bool {
	// The closure takes the request alone, not the owner: one is made per conflict answer
	// (10^6 of them in a large trace).
	want := o.request(semconv.KindPOSIX)
	return func(p *lockmodel.Process) bool {
		return m.holdsOpenAt(p.Locker, at, func(h *Hold) bool {
			return h.File == file && h.Mode == want.Mode && h.Overlaps(want)
		})
	}
}
