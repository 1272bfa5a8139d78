package analysis

import (
	"fmt"
	"sort"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
)

// detector runs the detectors over a model.
type detector struct {
	m      *model
	stuck  int64
	settle int64          // the poll interval: how late a watcher's answer may come
	seen   map[string]int // class + attempt → index in out: one finding of a class per attempt
	out    []Finding
}

func (d *detector) add(f Finding) {
	key := f.Class + "/" + fmt.Sprint(f.Attempts, f.Lockers)
	if len(f.Attempts) == 1 {
		key = f.Class + "/" + f.Attempts[0]
	}
	if i, ok := d.seen[key]; ok {
		// the same signature seen another way: keep the first finding, add its evidence
		prev := &d.out[i]
		prev.FormedAt = min(prev.FormedAt, f.FormedAt)
		prev.Duration = max(prev.Duration, f.Duration)
		for _, e := range f.Evidence {
			if !hasEvidence(prev.Evidence, e) {
				prev.Evidence = append(prev.Evidence, e)
			}
		}
		sort.SliceStable(prev.Evidence, func(i, j int) bool { return prev.Evidence[i].At < prev.Evidence[j].At })
		return
	}
	d.seen[key] = len(d.out)
	d.out = append(d.out, f)
}

func hasEvidence(list []Evidence, e Evidence) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}

// ownerRun is a stretch of time over which a waiter's F_GETLK kept naming the same owner.
type ownerRun struct {
	from, to int64
	first    Conflict
}

func ownerRuns(a *Attempt, until int64) []ownerRun {
	var runs []ownerRun
	for i, c := range a.Conflicts {
		if c.At >= until {
			break
		}
		if len(runs) > 0 && sameOwner(runs[len(runs)-1].first.Owner, c.Owner) {
			continue
		}
		if len(runs) > 0 {
			runs[len(runs)-1].to = c.At
		}
		_ = i
		runs = append(runs, ownerRun{from: max(c.At, a.Begin), to: until, first: c})
	}
	return runs
}

// waiterFindings runs the stuck-waiter detectors on one attempt, open until `until`.
func (d *detector) waiterFindings(a *Attempt, until int64) {
	if until-a.Begin < d.stuck {
		return
	}
	m := d.m
	base := Finding{Lockers: []int64{a.Locker}, Attempts: []string{a.ID}, Lock: a.lock(), DetectedAt: until,
		Uncertainty: m.uncertainty(a.Locker)}
	resolved := a.End != 0 && a.End <= until && a.Outcome != semconv.OutcomeBlocked
	by := lockerParty(a.Locker)
	for _, r := range ownerRuns(a, until) {
		dur := r.to - r.from
		o := r.first.Owner
		ev := Evidence{At: r.first.At, Source: SourceGetlk, By: by, Fact: Answered{Owner: o}}
		if o.Source != "" && o.Source != semconv.OwnerFromNone && o.Source != SourceGetlk {
			ev.Source = o.Source
		}
		switch o.Class {
		case semconv.OwnerNone:
			// A grant of a conflicting lock to another locker during the run would have changed
			// a live watcher's answer: from there on the "nobody holds" it gave before is no
			// evidence (its F_GETLK may be stuck in the file system).
			to, cut := r.to, false
			if h := d.firstGrant(a, r.from, r.to); h != nil {
				to, cut = h.Begin, true
			}
			dur = to - r.from
			if o.Source == semconv.OwnerFromNone || dur < d.stuck {
				continue
			}
			f := base
			f.FormedAt, f.Duration, f.Resolved = r.from, dur, cut || (resolved && r.to == until)
			f.Evidence = append([]Evidence{ev}, d.observerSays(a, r.from, to)...)
			f.Detail = NobodyHolds{Waiter: a.Locker, Waited: dur}
			d.add(newFinding(ClassLostWakeup, f))
		case semconv.OwnerSelf:
			if dur < d.stuck {
				continue
			}
			f := base
			f.FormedAt, f.Duration, f.Resolved = r.from, dur, resolved && r.to == until
			f.Evidence = []Evidence{ev}
			f.Detail = HoldsItself{Waiter: a.Locker, Waited: dur}
			d.add(newFinding(ClassLostCallback, f))
		case semconv.OwnerLocker:
			d.staleOwner(a, r, ev, base, resolved)
		case semconv.OwnerForeign, semconv.OwnerUnknown:
			if dur < d.stuck {
				continue
			}
			if o.Class == semconv.OwnerUnknown && len(d.lockersHolding(a, r.from, r.to)) > 0 {
				continue // most likely one of the run's own holders the file system does not name
			}
			f := base
			f.FormedAt, f.Duration, f.Resolved = r.from, dur, resolved && r.to == until
			f.Evidence = []Evidence{ev}
			f.Detail = ForeignOwner{Waiter: a.Locker, Waited: dur, Owner: Party{Locker: -1, Class: o.Class, PID: o.PID, Node: o.Node}, Remote: o.Remote}
			d.add(newFinding(ClassForeignHolder, f))
		}
	}
	d.observedSelf(a, until, base, resolved)
}

// staleOwner checks a waiter blocked by a locker that no longer holds a conflicting lock.
func (d *detector) staleOwner(a *Attempt, r ownerRun, ev Evidence, base Finding, resolved bool) {
	m := d.m
	o := r.first.Owner
	var lastEnd int64 = -1
	var lastHold *Hold
	for _, h := range m.holdsOf[o.Locker] {
		if h.Begin >= r.to {
			break
		}
		if h.File != a.File || !d.m.sem.Conflict(a.Request, h.Request) {
			continue
		}
		// A hold ended by the run's end was still held then: its record stops at the end
		// instant, the lock goes when the locker takes the stop (seconds later on a host
		// slowed by a thousand lockers), so an answer naming it after the end is no stale one.
		if holdOpen(h, r.to-1) || h.End == 0 || h.How == semconv.HoldRunEnd {
			return // the owner holds it: a plain wait
		}
		if h.End > lastEnd {
			lastEnd, lastHold = h.End, h
		}
	}
	since := r.from
	if lastEnd > since {
		since = lastEnd
	}
	l := m.locker(o.Locker)
	if l.Exited && l.ExitAt < r.to && l.ExitAt > since {
		since = max(r.from, l.ExitAt)
	}
	dur := r.to - since
	if dur < d.stuck {
		return
	}
	f := base
	f.FormedAt, f.Duration, f.Resolved = since, dur, resolved && r.to == base.DetectedAt
	f.Lockers = []int64{a.Locker, o.Locker}
	f.Evidence = []Evidence{ev}
	if released := max(lastEnd, exitBefore(l, r.to)); released >= 0 {
		// The claim is that the file system still names the owner after its lock ended. The
		// watcher records changes only: an answer from before the release, never repeated, may
		// come from a watcher stuck in the call (a stopped FUSE client) and proves nothing.
		fresh := d.answersSince(a, r, o.Locker, released)
		if len(fresh) == 0 {
			return
		}
		f.Evidence = append(f.Evidence, fresh...)
	}
	if lastHold == nil {
		// The file system names a locker that was never granted such a lock: if that locker is
		// itself waiting for it, its grant was lost on the way.
		if w := m.attemptAt(o.Locker, since); w != nil && w.File == a.File && w.Mode == o.Mode {
			f.Lockers = []int64{o.Locker, a.Locker}
			f.Attempts = []string{w.ID}
			f.Lock = w.lock()
			f.Detail = NamedHolder{Waiter: o.Locker, Asker: a.Locker}
			d.add(newFinding(ClassLostCallback, f))
			return
		}
		f.Detail = StaleOwner{Waiter: a.Locker, Waited: dur, Owner: o.Locker, NeverGranted: true}
		d.add(newFinding(ClassStaleHolder, f))
		return
	}
	f.Evidence = append(f.Evidence, Evidence{At: lastHold.End, Source: SourceTrace, By: lockerParty(o.Locker),
		Fact: LockEnded{Lock: lastHold.lock(), How: lastHold.How}})
	f.Detail = StaleOwner{Waiter: a.Locker, Waited: r.to - r.from, Owner: o.Locker, How: lastHold.How,
		Exited: l.Exited && l.ExitAt <= r.to, ExitStatus: l.ExitStatus, Since: dur}
	d.add(newFinding(ClassStaleHolder, f))
}

// exitBefore returns the instant the locker's process ended if that was before t, else -1.
func exitBefore(l *Locker, t int64) int64 {
	if l.Exited && l.ExitAt < t {
		return l.ExitAt
	}
	return -1
}

// answersSince returns the answers given after instant since, within the waiter's run r of
// answers, that still name locker owner as holder of a lock the attempt conflicts with: the
// waiter's own latest F_GETLK answer of the run, and the first such answer of each observer.
func (d *detector) answersSince(a *Attempt, r ownerRun, owner, since int64) []Evidence {
	m := d.m
	var out []Evidence
	for i := conflictAt(a, r.to-1); i >= 0 && a.Conflicts[i].At >= r.first.At; i-- {
		c := a.Conflicts[i]
		if c.At <= since {
			break
		}
		if c.Owner.Locker == owner && c.Owner.Class == semconv.OwnerLocker {
			out = append(out, Evidence{At: c.At, Source: SourceGetlk, By: lockerParty(a.Locker), Fact: Answered{Owner: c.Owner, Again: true}})
			break
		}
	}
	seen := map[int64]bool{}
	for _, x := range m.obsRuns[a.File] {
		ob := x.o
		if ob.At >= r.to {
			break
		}
		if ob.At <= since || seen[ob.Observer] || ob.Owner.Locker != owner || ob.Owner.Class != semconv.OwnerLocker {
			continue
		}
		if !d.m.sem.Conflict(a.Request, ob.Owner.request(a.Kind)) {
			continue
		}
		seen[ob.Observer] = true
		out = append(out, Evidence{At: ob.At, Source: SourceObserver, By: observerParty(ob.Node),
			Fact: Observed{Query: ob.QueryMode, Owner: ob.Owner, Again: true}})
	}
	return out
}

// firstGrant returns the first hold of another locker, conflicting with the attempt, that began
// in (from, to), or nil.
func (d *detector) firstGrant(a *Attempt, from, to int64) *Hold {
	list := d.m.holdsFile[a.File]
	i := sort.Search(len(list), func(i int) bool { return list[i].Begin > from })
	for _, h := range list[i:] {
		if h.Begin >= to {
			break
		}
		if h.Locker != a.Locker && d.m.sem.Conflict(a.Request, h.Request) {
			return h
		}
	}
	return nil
}

// lockersHolding returns the lockers with a recorded hold that conflicts with the attempt at
// some instant of [from, to).
func (d *detector) lockersHolding(a *Attempt, from, to int64) []int64 {
	var out []int64
	seen := map[int64]bool{}
	for _, h := range d.m.holdsFile[a.File] {
		if h.Begin >= to {
			break
		}
		if h.Locker == a.Locker || seen[h.Locker] || (h.End != 0 && h.End <= from) {
			continue
		}
		if d.m.sem.Conflict(a.Request, h.Request) {
			seen[h.Locker] = true
			out = append(out, h.Locker)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// observerSays returns what the observers saw of the file during [from, to).
func (d *detector) observerSays(a *Attempt, from, to int64) []Evidence {
	var out []Evidence
	for _, r := range d.m.obsRuns[a.File] {
		if r.o.At >= to || (r.to != 0 && r.to <= from) {
			continue
		}
		out = append(out, Evidence{At: r.o.At, Source: SourceObserver, By: observerParty(r.o.Node),
			Fact: Observed{Query: r.o.QueryMode, Owner: r.o.Owner}})
	}
	return out
}

// observedSelf finds the observer seeing the waiter itself as holder of the lock it waits for.
func (d *detector) observedSelf(a *Attempt, until int64, base Finding, resolved bool) {
	m := d.m
	for _, r := range m.obsRuns[a.File] {
		o := r.o.Owner
		if o.Locker != a.Locker || (o.Class != semconv.OwnerLocker && o.Class != semconv.OwnerSelf) {
			continue
		}
		from := max(r.o.At, a.Begin)
		to := until
		if r.to != 0 && r.to < to {
			to = r.to
		}
		if to-from < d.stuck || o.Mode != a.Mode && a.Mode == semconv.ModeWrite {
			continue
		}
		if !o.request(a.Kind).Overlaps(a.Request) || d.holdsMode(a.Locker, a.File, o, from) {
			continue // it holds such a lock already (the read lock it wants to upgrade)
		}
		f := base
		f.FormedAt, f.Duration, f.Resolved = from, to-from, resolved && to == until
		f.Evidence = []Evidence{{At: r.o.At, Source: SourceObserver, By: observerParty(r.o.Node),
			Fact: Observed{Query: r.o.QueryMode, Owner: o}}}
		f.Uncertainty = max(f.Uncertainty, m.maxUnc)
		f.Detail = HoldsItself{Waiter: a.Locker, Waited: until - a.Begin, Observer: r.o.Node}
		d.add(newFinding(ClassLostCallback, f))
		return
	}
}

// holdsMode reports whether the locker has a recorded hold of the owner's mode over its range at t.
func (d *detector) holdsMode(locker int64, file string, o Owner, t int64) bool {
	return d.m.holdsOpenAt(locker, t, func(h *Hold) bool {
		return h.File == file && h.Mode == o.Mode && h.Overlaps(o.request(h.Kind))
	})
}

// fsDetected reports every EDEADLK: the file system refused a request that would close a cycle.
func (d *detector) fsDetected() {
	m := d.m
	for _, a := range m.attempts {
		if a.Outcome != semconv.OutcomeDeadlock && a.Errno != "EDEADLK" {
			continue
		}
		f := Finding{Lockers: []int64{a.Locker}, Attempts: []string{a.ID}, Lock: a.lock(), FormedAt: a.Begin,
			DetectedAt: a.End, Duration: a.End - a.Begin}
		f.Evidence = []Evidence{{At: a.End, Source: SourceErrno, By: lockerParty(a.Locker),
			Fact: Refused{Errno: nonEmpty(a.Errno, "EDEADLK"), Took: a.End - a.Begin}}}
		ref := Refusal{Requester: a.Locker, With: []int64{}}
		if cycle := d.cycleThrough(a); len(cycle) > 1 {
			f.Lockers = cycle
			ref.With = cycle[1:]
		}
		if p := m.pollBefore(a); p != nil {
			// casacore's way: tries of F_SETLK a second apart, then F_SETLKW. The stall the
			// user sees is the whole of it.
			f.FormedAt, f.Duration = p.Begin, a.End-p.Begin
			f.Attempts = append(f.Attempts, p.ID)
			ref.Polled = &PollFailed{Tries: p.Tries, Errno: nonEmpty(p.Errno, "EAGAIN"), Took: p.End - p.Begin}
			f.Evidence = append(f.Evidence, Evidence{At: p.End, Source: SourceTrace, By: lockerParty(a.Locker), Fact: *ref.Polled})
		}
		f.Detail = ref
		d.add(newFinding(ClassFSDetected, f))
	}
}

// cycleThrough returns the lockers of the cycle the attempt would have closed, the requester first.
func (d *detector) cycleThrough(a *Attempt) []int64 {
	g := d.m.buildGraph(a.Begin)
	targets := map[int64]bool{}
	for _, h := range d.m.holdsAt(a, a.Begin) {
		targets[h.Locker] = true
	}
	for _, c := range a.Conflicts {
		if c.Owner.Class == semconv.OwnerLocker {
			targets[c.Owner.Locker] = true
		}
	}
	ids := make([]int64, 0, len(targets))
	for id := range targets {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, t := range ids {
		if p := g.path(t, a.Locker); p != nil {
			return append([]int64{a.Locker}, p[:len(p)-1]...)
		}
	}
	return []int64{a.Locker}
}

// path returns a shortest path from → to (both included), or nil.
func (g *WaitGraph) path(from, to int64) []int64 {
	prev := map[int64]int64{from: from}
	queue := []int64{from}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if u == to {
			out := []int64{u}
			for u != from {
				u = prev[u]
				out = append(out, u)
			}
			for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
				out[i], out[j] = out[j], out[i]
			}
			return out
		}
		for _, e := range g.out(u) {
			if _, ok := prev[e.To]; !ok {
				prev[e.To] = u
				queue = append(queue, e.To)
			}
		}
	}
	return nil
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// pollBefore returns the failed poll (or try) of the same request the locker made just before
// attempt a, or nil.
func (m *model) pollBefore(a *Attempt) *Attempt {
	list := m.byLocker[a.Locker]
	i := sort.Search(len(list), func(i int) bool { return list[i].Begin >= a.Begin }) - 1
	if i < 0 {
		return nil
	}
	p := list[i]
	if p.Outcome != semconv.OutcomeWouldBlock || p.File != a.File || p.Mode != a.Mode || p.Start != a.Start || p.Len != a.Len ||
		p.End == 0 || a.Begin-p.End > int64(2*time.Second) {
		return nil
	}
	return p
}
