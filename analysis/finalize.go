package analysis

import (
	"fmt"
	"strings"

	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// Check runs the detectors that can fire on live state at instant now (unix ns, controller
// clock): cycles in the wait-for graph that have stood for the settle time, and waiters stuck for
// StuckAfter. Findings come most severe first; their FormedAt tells when the condition began.
func (a *Analyzer) Check(now int64) []Finding {
	m := a.model()
	d := &detector{m: m, stuck: a.stuck(), settle: a.settle(m), seen: map[string]int{}}
	g := m.buildGraph(now)
	settle := a.settle(m)
	for i, c := range g.Cycles {
		formed := g.cycleFormed(c)
		if now-formed < settle || !m.allBlocking(c, now) {
			continue
		}
		d.add(d.deadlock(g, g.SCCs[i], c, now, formed, now, false, ""))
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
		Verdict:      verdictOf(fs),
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
	r.fill(m)
	return r
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
		how := fmt.Sprintf("after %s, when the attempt of locker %d ended %s", secs(brokenAt-ep.formed), broken.Locker, broken.Outcome)
		f := d.deadlock(g, g.SCCs[i], g.Cycles[i], at, ep.formed, brokenAt, true, how)
		d.add(f)
	}
	for i := range gEnd.SCCs {
		if f, ok := formed[i]; ok {
			d.add(d.deadlock(gEnd, gEnd.SCCs[i], gEnd.Cycles[i], end, f, end, false, ""))
		}
	}
}

// deadlock builds the finding of a strongly connected component of g (taken at instant gAt):
// every member waits, directly or not, for every other.
func (d *detector) deadlock(g *WaitGraph, scc, cycle []int64, gAt, formed, at int64, resolved bool, how string) Finding {
	m := d.m
	f := Finding{Cycle: append([]int64(nil), cycle...), FormedAt: formed, DetectedAt: at, Duration: at - formed, Resolved: resolved}
	in := map[int64]bool{}
	for _, id := range scc {
		in[id] = true
	}
	var parts []string
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
			f.File, f.Mode, f.Kind, f.Start, f.Len = a.File, a.Mode, a.Kind, a.Start, a.Len
		}
		var owners []string
		for _, e := range g.out(id) {
			if !in[e.To] {
				continue
			}
			owners = append(owners, m.ownerName(g, e.To))
			f.Evidence = append(f.Evidence, Evidence{At: e.Since, Source: e.Sources[0], By: m.by(id),
				Text: fmt.Sprintf("waits for %s: it wants %s (seen by %s)", m.ownerName(g, e.To), attemptText(a), strings.Join(e.Sources, "+"))})
			for _, c := range a.Conflicts {
				if c.At <= gAt && c.Owner.Locker == e.To && c.Owner.Class == semconv.OwnerLocker {
					f.Evidence = append(f.Evidence, Evidence{At: c.At, Source: SourceGetlk, By: m.by(id),
						Text: "F_GETLK for its request answered: " + m.ownerText(c.Owner)})
					break
				}
			}
		}
		parts = append(parts, fmt.Sprintf("%s wants %s held by %s", m.who(id), attemptText(a), strings.Join(owners, " and ")))
	}
	span := "one file"
	if len(files) > 1 {
		span = fmt.Sprintf("%d files", len(files))
	}
	tail := fmt.Sprintf("the cycle has stood for %s and nothing broke it", secs(at-formed))
	if resolved {
		tail = "the cycle stood until it was broken " + how
	}
	f.Summary = fmt.Sprintf("deadlock: %s wait for each other in a cycle over %s — %s; %s",
		m.members(f.Lockers), span, strings.Join(parts, "; "), tail)
	return newFinding(ClassDeadlock, f)
}

func (m *model) ownerName(g *WaitGraph, id int64) string {
	if n := g.node(id); n != nil && n.Locker < 0 {
		return fmt.Sprintf("%s pid %d on %s", n.Class, n.PID, n.Node)
	}
	return m.by(id)
}

// exclusion finds conflicting holds of two lockers that overlap in time by more than the two
// lockers' clock uncertainties: recorded holds sit inside the real ones, so that cannot happen
// on a file system that keeps mutual exclusion.
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
				if overlap <= bound {
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
		File: h.File, Mode: h.Mode, Kind: h.Kind, Start: h.Start, Len: h.Len, FormedAt: h.Begin,
		DetectedAt: h.Begin, Duration: overlap, Uncertainty: bound}
	for _, y := range []*Hold{x, h} {
		f.Evidence = append(f.Evidence, Evidence{At: y.Begin, Source: SourceTrace, By: m.by(y.Locker),
			Text: fmt.Sprintf("granted a %s %s lock on %s of %s, held until %s", y.Kind, y.Mode, rangeText(y.Start, y.Len), y.File, endText(y))})
	}
	f.Summary = fmt.Sprintf("mutual exclusion violated: %s and %s both held conflicting locks on %s of %s for %s (clock uncertainty %s)",
		m.who(x.Locker), m.who(h.Locker), rangeText(max(x.Start, h.Start), overlapLen(x, h)), h.File, secs(overlap), secs(bound))
	if ev, why := d.lostClient(x, h, overlapEnd); why != "" {
		f.Evidence = append(f.Evidence, ev...)
		f.Summary += why
	}
	if nx, nh := m.locker(x.Locker), m.locker(h.Locker); m.fs.NodeLocal && nx != nil && nh != nil && nx.Node != nh.Node {
		f.Evidence = append(f.Evidence, Evidence{At: h.Begin, Source: SourceFS, By: "mount options of " + nh.Node,
			Text: fmt.Sprintf("the file system is %s: each node arbitrates its own locks and none across nodes", m.fs.FS)})
		f.Summary += fmt.Sprintf("; the cause is the mount option %s, which makes locks node-local (%s and %s are on different nodes): configuration, not a bug of the lock manager",
			m.fs.Option, nx.Node, nh.Node)
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
			f.Evidence = append(f.Evidence, Evidence{At: p.Begin, Source: SourceTrace, By: m.by(r.Locker),
				Text: fmt.Sprintf("was waiting to convert its read lock to %s when locker %d was granted its %s lock", attemptText(p), w.Locker, w.Mode)})
			f.Summary += fmt.Sprintf("; locker %d was blocked converting its read lock to write when locker %d got its write lock: the file system dropped the read lock during the blocked conversion",
				r.Locker, w.Locker)
			break
		}
	}
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

func endText(h *Hold) string {
	if h.End == 0 {
		return "the end (" + h.How.String() + ")"
	}
	return h.How.String()
}

// implicitRelease reports POSIX holds ended by closing a descriptor other than the one the lock
// was taken through: the process lost the lock while the scenario still believed it held it.
func (d *detector) implicitRelease() {
	m := d.m
	for _, h := range m.holds {
		if h.How != semconv.HoldClose || h.ClosedFD < 0 || h.ClosedFD == h.FD || h.Kind != semconv.KindPOSIX {
			continue
		}
		f := Finding{Lockers: []int64{h.Locker}, Attempts: []string{h.AcquireID}, File: h.File, Mode: h.Mode,
			Kind: h.Kind, Start: h.Start, Len: h.Len, FormedAt: h.End, DetectedAt: h.End, Duration: h.End - h.Begin}
		f.Evidence = []Evidence{{At: h.End, Source: SourceTrace, By: m.by(h.Locker),
			Text: fmt.Sprintf("closed descriptor slot %d of %s; its lock was taken through slot %d", h.ClosedFD, h.File, h.FD)}}
		f.Summary = fmt.Sprintf("%s lost its posix %s lock on %s of %s when it closed another descriptor (slot %d) of the file: POSIX drops all of a process's locks on a file at any close",
			m.who(h.Locker), h.Mode, rangeText(h.Start, h.Len), h.File, h.ClosedFD)
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
		f := Finding{Lockers: []int64{}, Attempts: []string{a.ID}, File: a.File, Mode: a.Mode, Kind: a.Kind,
			Start: a.Start, Len: a.Len, FormedAt: a.Begin, DetectedAt: end, Duration: end - a.Begin}
		for i, id := range chain {
			if n := g.node(id); n != nil && n.Locker >= 0 {
				f.Lockers = append(f.Lockers, n.Locker)
			}
			if i+1 < len(chain) {
				if e := g.edge(id, chain[i+1]); e != nil {
					f.Evidence = append(f.Evidence, Evidence{At: e.Since, Source: e.Sources[0], By: m.ownerName(g, id),
						Text: fmt.Sprintf("waits for %s (%s)", m.ownerName(g, chain[i+1]), e.Label)})
				}
			}
		}
		switch {
		case last == nil:
			continue
		case last.Locker < 0:
			f.Summary = fmt.Sprintf("%s was still waiting at the end, after %s, for %s held by %s pid %d on %s, which is no locker of this run",
				m.who(a.Locker), secs(end-a.Begin), attemptText(a), last.Class, last.PID, last.Node)
			d.add(newFinding(ClassForeignHolder, f))
		case !last.Waiting && last.Holding && !m.exitedBy(last.Locker, end) && m.locker(last.Locker).isProgram():
			// A scenario's long hold is what it asked for; a program's holder that waits for
			// no lock while another process waits for it is why that process hangs.
			doing, ev := m.doing(last.Locker)
			f.Evidence = append(f.Evidence, ev...)
			f.Summary = fmt.Sprintf("%s has waited %s for %s: the chain of waits ends at %s, which holds the lock and waits for no lock — it is %s",
				m.who(a.Locker), secs(end-a.Begin), attemptText(a), m.who(last.Locker), doing)
			d.add(newFinding(ClassIdleHolder, f))
		case !last.Waiting && last.Holding && !m.exitedBy(last.Locker, end):
			f.Summary = fmt.Sprintf("%s was still waiting at the end, after %s, for %s: the chain of waits ends at %s, which holds the lock and waits for nothing — a long hold, not a hang",
				m.who(a.Locker), secs(end-a.Begin), attemptText(a), m.who(last.Locker))
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
		if id >= foreignBase {
			continue
		}
		if at := m.attemptAt(id, t); at == nil || at.Style != semconv.StyleWait {
			return false
		}
	}
	return true
}
