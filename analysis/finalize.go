package analysis

import (
	"strings"

	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// Check runs the detectors that can fire on live state at instant now (unix ns, controller
// clock): cycles in the wait-for graph that have stood for the settle time, and waiters stuck for
// StuckAfter. Findings come most severe first; their FormedAt tells when the condition began.
func (a *Analyzer) Check(now int64) []Finding {
	return a.check(a.live.model(now, a.liveSettle()), now)
}

// check runs Check's detectors on model m.
func (a *Analyzer) check(m *model, now int64) []Finding {
	d := &detector{m: m, stuck: a.stuck(), settle: a.settle(m), seen: map[string]int{}}
	g := m.buildGraph(now)
	settle := a.settle(m)
	for i, c := range g.Cycles {
		formed := g.cycleFormed(c)
		if now-formed < settle || !m.allBlocking(c, now) {
			continue
		}
		d.add(d.deadlock(g, g.SCCs[i], c, now, formed, now, nil))
	}
	for _, l := range m.lockers {
		if at := m.attemptAt(l.ID, now); at != nil {
			d.waiterFindings(at, now)
		}
	}
	sortFindings(d.out)
	if d.out == nil {
		return []Finding{}
	}
	return d.out
}

// Finalize runs every detector over the whole run, which ended at end (unix ns), and gathers
// the statistics.
func (a *Analyzer) Finalize(end int64) *Result {
	m := a.model()
	// The statistics read the finished model as the detectors do and change nothing of it:
	// on a second core they take none of the time from the end of the input to the result
	// (a third of it at 10^6 events).
	var st figures
	done := make(chan struct{})
	go func() {
		defer close(done)
		st = m.figures(end)
	}()
	stuck := a.stuck()
	d := &detector{m: m, stuck: stuck, settle: a.settle(m), seen: map[string]int{}}
	gEnd := m.buildGraph(end)
	d.cycles(end, gEnd)
	d.fsDetected()
	for _, at := range m.attempts {
		until := at.End
		if until == 0 || until > end {
			until = end
		}
		d.waiterFindings(at, until)
	}
	d.exclusion(end)
	d.implicitRelease()
	d.longHolds(end, gEnd)
	sortFindings(d.out)
	fs := d.out
	if fs == nil {
		fs = []Finding{}
	}
	r := &Result{
		Verdict:      verdictOf(fs, m.nothingToJudge()),
		Findings:     fs,
		Run:          m.run,
		Start:        m.run.Begin,
		End:          end,
		Truncated:    a.truncated,
		MessagesLost: m.run.MessagesLost,
		StuckAfter:   stuck,
		Graph:        gEnd,
		Semantics:    m.fs,
	}
	if len(fs) > 0 && len(gEnd.Edges) == 0 && fs[0].FormedAt > 0 {
		r.Graph = m.buildGraph(fs[0].FormedAt + fs[0].Duration - 1)
	}
	<-done
	r.fill(m, st)
	return r
}

// nothingToJudge says why the trace holds no run to judge: a run that saw nothing has no
// verdict of health.
func (m *model) nothingToJudge() Unjudged {
	switch {
	case m.run.TraceID == "" && len(m.lockers) == 0 && len(m.attempts) == 0:
		return EmptyTrace
	case m.run.EndReason == "start-failed":
		return StartFailed
	case m.run.TraceID != "" && m.run.StartNS == 0:
		return NotStarted
	}
	return Judged
}

// cycles turns the cycles the sweep found into deadlock findings: one per strongly connected
// component still standing at the end (formed when its first cycle closed), and those of blocking
// waits that stood for StuckAfter before something broke them.
func (d *detector) cycles(end int64, gEnd *WaitGraph) {
	m := d.m
	formed := map[int]int64{}
	for _, ep := range m.scanCycles(end) {
		brokenAt, broken := int64(0), (*Attempt)(nil)
		allWait := true
		for _, at := range ep.attempts {
			allWait = allWait && at.Style == semconv.StyleWait
			if !attemptOpen(at, end) && (broken == nil || at.End < brokenAt) {
				brokenAt, broken = at.End, at
			}
		}
		if broken == nil {
			if !allWait {
				// Pollers in a cycle are not stuck yet: each may give up and let go.
				continue
			}
			if i := gEnd.sccOf(ep.cycle); i >= 0 {
				if f, ok := formed[i]; !ok || ep.formed < f {
					formed[i] = ep.formed
				}
			}
			continue
		}
		if broken.Outcome == semconv.OutcomeDeadlock || broken.Errno == "EDEADLK" || !allWait || brokenAt-ep.formed < d.stuck {
			continue
		}
		at := ep.formed + d.stuck
		g := m.buildGraph(at)
		i := g.sccOf(ep.cycle)
		if i < 0 {
			continue
		}
		f := d.deadlock(g, g.SCCs[i], g.Cycles[i], at, ep.formed, brokenAt, &Break{Locker: broken.Locker, Outcome: broken.Outcome})
		d.add(f)
	}
	for i := range gEnd.SCCs {
		if f, ok := formed[i]; ok {
			d.add(d.deadlock(gEnd, gEnd.SCCs[i], gEnd.Cycles[i], end, f, end, nil))
		}
	}
}

// deadlock builds the finding of a strongly connected component of g (taken at instant gAt):
// every member waits, directly or not, for every other. broken, when not nil, says how the cycle
// ended at instant at.
func (d *detector) deadlock(g *WaitGraph, scc, cycle []int64, gAt, formed, at int64, broken *Break) Finding {
	m := d.m
	f := Finding{Cycle: append([]int64(nil), cycle...), FormedAt: formed, DetectedAt: at, Duration: at - formed, Resolved: broken != nil}
	in := map[int64]bool{}
	for _, id := range scc {
		in[id] = true
	}
	detail := Cycle{Members: []Member{}, Broken: broken}
	files := map[string]bool{}
	for _, id := range scc {
		f.Lockers = append(f.Lockers, id)
		a := m.attemptAt(id, gAt)
		if a == nil {
			continue
		}
		f.Attempts = append(f.Attempts, a.ID)
		files[a.File] = true
		f.Uncertainty = max(f.Uncertainty, m.uncertainty(id))
		if len(f.Attempts) == 1 {
			f.Lock = a.lock()
		}
		member := Member{Locker: id, Want: a.lock(), Owners: []Party{}}
		for _, e := range g.out(id) {
			if !in[e.To] {
				continue
			}
			member.Owners = append(member.Owners, g.party(e.To))
			f.Evidence = append(f.Evidence, Evidence{At: e.Since, Source: e.Sources[0], By: lockerParty(id),
				Fact: WaitsFor{To: g.party(e.To), Want: a.lock(), Seen: strings.Join(e.Sources, "+")}})
			for _, c := range a.Conflicts {
				if c.At <= gAt && c.Owner.Locker == e.To && c.Owner.Class == semconv.OwnerLocker {
					f.Evidence = append(f.Evidence, Evidence{At: c.At, Source: SourceGetlk, By: lockerParty(id),
						Fact: Answered{Owner: c.Owner, InCycle: true}})
					break
				}
			}
		}
		detail.Members = append(detail.Members, member)
	}
	detail.Files = len(files)
	f.Detail = detail
	return newFinding(ClassDeadlock, f)
}

// party names the owner of graph node id.
func (g *WaitGraph) party(id int64) Party {
	if n := g.node(id); n != nil && n.Locker < 0 {
		return Party{Locker: -1, Class: n.Class, PID: n.PID, Node: n.Node}
	}
	return lockerParty(id)
}

// exclusion finds conflicting holds of two lockers that overlap in time whatever their clocks'
// errors: recorded holds sit inside the real ones, so that cannot happen on a file system that
// keeps mutual exclusion. Shifted against each other by up to the two lockers' clock bounds, the
// holds still overlap when each began more than the bound before the other ended (a short hold
// deep inside a long one overlaps it for sure, however short).
func (d *detector) exclusion(end int64) {
	m := d.m
	for _, file := range sortedKeys(m.holdsFile) {
		var active []*Hold
		for _, h := range m.holdsFile[file] {
			kept := active[:0]
			for _, x := range active {
				if x.End == 0 || x.End > h.Begin {
					kept = append(kept, x)
				}
			}
			active = kept
			for _, x := range active {
				if x.Locker == h.Locker || !m.sem.Conflict(x.Request, h.Request) {
					continue
				}
				xe, he := holdEnd(x, end), holdEnd(h, end)
				overlap := min(xe, he) - h.Begin
				bound := m.uncertainty(x.Locker) + m.uncertainty(h.Locker)
				if xe-h.Begin <= bound || he-x.Begin <= bound || overlap <= 0 {
					continue
				}
				d.add(d.violation(x, h, overlap, bound, min(xe, he)))
			}
			active = append(active, h)
		}
	}
}

func holdEnd(h *Hold, end int64) int64 {
	if h.End == 0 || h.End > end {
		return end
	}
	return h.End
}

func (d *detector) violation(x, h *Hold, overlap, bound, overlapEnd int64) Finding {
	m := d.m
	f := Finding{Lockers: []int64{x.Locker, h.Locker}, Attempts: []string{x.AcquireID, h.AcquireID},
		Lock: h.lock(), FormedAt: h.Begin, DetectedAt: h.Begin, Duration: overlap, Uncertainty: bound}
	for _, y := range []*Hold{x, h} {
		f.Evidence = append(f.Evidence, Evidence{At: y.Begin, Source: SourceTrace, By: lockerParty(y.Locker),
			Fact: Granted{Lock: y.lock(), How: y.How, Open: y.End == 0}})
	}
	detail := Overlap{Holders: [2]int64{x.Locker, h.Locker},
		Range: lockmodel.Request{Start: max(x.Start, h.Start), Len: overlapLen(x, h)}}
	if ev, lost := d.lostClient(x, h, overlapEnd); lost != nil {
		f.Evidence = append(f.Evidence, ev...)
		detail.Lost = lost
	}
	if ev, p := d.partition(x, h); p != nil {
		f.Evidence = append(f.Evidence, ev...)
		detail.Partition = p
	}
	if nx, nh := m.locker(x.Locker), m.locker(h.Locker); m.fs.NodeLocal && nx != nil && nh != nil && nx.Node != nh.Node {
		f.Evidence = append(f.Evidence, Evidence{At: h.Begin, Source: SourceFS, By: Party{Locker: -1, Mount: true, Node: nh.Node},
			Fact: NodeLocalLocks{FS: m.fs.FS}})
		detail.NodeLocal = &NodeLocality{Option: m.fs.Option, Nodes: [2]string{nx.Node, nh.Node}}
		f.Cause = CauseMountOption
	}
	// A read hold still open when another locker's write hold began, while its owner waited to
	// convert it to write: the file system dropped the read lock during the blocked conversion.
	for _, pair := range [][2]*Hold{{x, h}, {h, x}} {
		r, w := pair[0], pair[1]
		if r.Mode != semconv.ModeRead {
			continue
		}
		if p := m.attemptAt(r.Locker, w.Begin); p != nil && p.Mode == semconv.ModeWrite && p.File == r.File && p.Overlaps(r.Request) {
			f.Evidence = append(f.Evidence, Evidence{At: p.Begin, Source: SourceTrace, By: lockerParty(r.Locker),
				Fact: Converting{Want: p.lock(), To: w.Locker, ToMode: w.Mode}})
			detail.Converting = &Conversion{Reader: r.Locker, Writer: w.Locker}
			break
		}
	}
	f.Detail = detail
	return newFinding(ClassExclusionViolated, f)
}

func overlapLen(x, h *Hold) int64 {
	if x.Kind == semconv.KindFlock {
		return 0
	}
	s := max(x.Start, h.Start)
	e := min(x.To(), h.To())
	if e == lockmodel.EOF {
		return 0
	}
	return e - s
}

// implicitRelease reports POSIX holds ended by closing a descriptor other than the one the lock
// was taken through: the process lost the lock while the scenario still believed it held it.
func (d *detector) implicitRelease() {
	m := d.m
	for _, h := range m.holds {
		if h.How != semconv.HoldClose || h.ClosedFD < 0 || h.ClosedFD == h.FD || h.Kind != semconv.KindPOSIX {
			continue
		}
		f := Finding{Lockers: []int64{h.Locker}, Attempts: []string{h.AcquireID}, Lock: h.lock(), FormedAt: h.End,
			DetectedAt: h.End, Duration: h.End - h.Begin}
		f.Evidence = []Evidence{{At: h.End, Source: SourceTrace, By: lockerParty(h.Locker),
			Fact: ClosedSlot{Slot: h.ClosedFD, LockSlot: h.FD, Lock: h.lock()}}}
		f.Detail = ImplicitRelease{Locker: h.Locker, Slot: h.ClosedFD}
		d.add(newFinding(ClassImplicitRelease, f))
	}
}

// longHolds explains waiters still blocked at the end whose chain of waits ends at a live holder
// that is not waiting itself: a long hold, not a hang of the file system.
func (d *detector) longHolds(end int64, g *WaitGraph) {
	m := d.m
	for _, l := range m.lockers {
		a := m.attemptAt(l.ID, end)
		if a == nil || d.involved(a.ID) {
			continue
		}
		chain := []int64{l.ID}
		seen := map[int64]bool{l.ID: true}
		for {
			cur := chain[len(chain)-1]
			var next int64 = -1
			for _, e := range g.out(cur) {
				if !seen[e.To] {
					next = e.To
					break
				}
			}
			if next < 0 {
				break
			}
			seen[next] = true
			chain = append(chain, next)
		}
		if len(chain) < 2 {
			continue
		}
		last := g.node(chain[len(chain)-1])
		f := Finding{Lockers: []int64{}, Attempts: []string{a.ID}, Lock: a.lock(), FormedAt: a.Begin, DetectedAt: end,
			Duration: end - a.Begin}
		for i, id := range chain {
			if n := g.node(id); n != nil && n.Locker >= 0 {
				f.Lockers = append(f.Lockers, n.Locker)
			}
			if i+1 < len(chain) {
				if e := g.edge(id, chain[i+1]); e != nil {
					f.Evidence = append(f.Evidence, Evidence{At: e.Since, Source: e.Sources[0], By: g.party(id),
						Fact: WaitsFor{To: g.party(chain[i+1]), Want: e.Lock, Seen: strings.Join(e.Sources, "+"), InChain: true}})
				}
			}
		}
		switch {
		case last == nil:
			continue
		case last.Locker < 0:
			f.Detail = ForeignOwner{Waiter: a.Locker, Waited: end - a.Begin, Owner: g.party(last.ID), AtEnd: true, Remote: last.Remote}
			d.add(newFinding(ClassForeignHolder, f))
		case !last.Waiting && last.Holding && !m.exitedBy(last.Locker, end) && m.locker(last.Locker).isProgram():
			// A scenario's long hold is what it asked for; a program's holder that waits for
			// no lock while another process waits for it is why that process hangs.
			idle := IdleHolder{Waiter: a.Locker, Waited: end - a.Begin, Holder: last.Locker}
			if st, ok := m.stateOf(last.Locker); ok {
				idle.Doing, idle.Known = st, true
				f.Evidence = append(f.Evidence, Evidence{At: m.stateAt(last.Locker), Source: SourceSnapshot, By: lockerParty(last.Locker), Fact: st})
			}
			f.Detail = idle
			d.add(newFinding(ClassIdleHolder, f))
		case !last.Waiting && last.Holding && !m.exitedBy(last.Locker, end):
			f.Detail = LongHold{Waiter: a.Locker, Waited: end - a.Begin, Holder: last.Locker}
			d.add(newFinding(ClassLongHold, f))
		}
	}
}

// involved reports whether an attempt is already part of a finding.
func (d *detector) involved(id string) bool {
	for _, f := range d.out {
		for _, a := range f.Attempts {
			if a == id {
				return true
			}
		}
	}
	return false
}

// allBlocking says whether every locker of cycle is blocked in a waiting lock call at t. A cycle
// that a poll or try attempt closes is not a deadlock yet: that attempt may give up, and its
// locker may release what the others wait for (casacore's upgrade polls first, then waits).
func (m *model) allBlocking(cycle []int64, t int64) bool {
	for _, id := range cycle {
		if id >= ForeignBase {
			continue
		}
		if at := m.attemptAt(id, t); at == nil || at.Style != semconv.StyleWait {
			return false
		}
	}
	return true
}
