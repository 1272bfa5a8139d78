package analysis

import (
	"slices"

	"github.com/lockprobe/lockprobe/semconv"
)

// indexPIDs maps every process and thread id of the lockers to them. FUSE file systems name a
// lock's owner by the thread that made the call (GlusterFS records the caller's thread id on the
// brick, and a restarted request comes back with it as l_pid), so the lock thread's id
// (process.tid on the locker's resource, or in the snapshot) names the locker as well as its pid.
func (m *model) indexPIDs() {
	m.byPID = map[int64][]*Locker{}
	add := func(id int64, l *Locker) {
		if id > 0 && !slices.Contains(m.byPID[id], l) {
			m.byPID[id] = append(m.byPID[id], l)
		}
	}
	for _, l := range m.lockers {
		add(l.PID, l)
		add(l.TID, l)
	}
	for _, st := range m.states {
		l, ok := m.byID[st.Locker]
		if !ok || st.TID <= 0 {
			continue
		}
		if l.TID == 0 {
			l.TID = st.TID
		}
		add(st.TID, l)
	}
}

// lockerByPID maps a pid (or a lock thread's id) reported on a node to a locker id, or -1: a
// locker of that node first, else the one locker of any node with that id (a run's nodes may be
// mounts on one host), never one of several.
func (m *model) lockerByPID(node string, pid int64) int64 {
	list := m.byPID[pid]
	if node != "" {
		for _, l := range list {
			if l.Node == node || l.Host == node {
				return l.ID
			}
		}
	}
	if len(list) == 1 {
		return list[0].ID
	}
	return -1
}

// mapOwners names the lockers behind owners a locker could not map: traces written before
// lockers shared their lock thread's id with their peers class an owner named by a thread id
// foreign.
func (m *model) mapOwners() {
	remap := func(o *Owner, self int64) {
		if o.Locker >= 0 || o.PID <= 0 || (o.Class != semconv.OwnerForeign && o.Class != semconv.OwnerUnknown) {
			return
		}
		id := m.lockerByPID(o.Node, o.PID)
		if id < 0 {
			return
		}
		o.Locker, o.Class, o.Node = id, semconv.OwnerLocker, m.locker(id).Node
		if id == self {
			o.Class = semconv.OwnerSelf
		}
	}
	for _, a := range m.attempts {
		for i := range a.Conflicts {
			remap(&a.Conflicts[i].Owner, a.Locker)
		}
	}
	for i := range m.obs {
		remap(&m.obs[i].Owner, -1)
	}
	for _, g := range m.getlks {
		remap(&g.Owner, g.Locker)
	}
}
