package reports

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/semconv"
)

// The analysis says what it found as data; every sentence about a finding, its evidence and the
// wait-for graph is written here, from that data and the lockers' identities.

// healthySummary is the verdict's sentence when nothing was found.
const healthySummary = "healthy: every lock attempt ended and no signature of a file-system locking bug was found"

// healthyBlocked is the healthy verdict of a run that ended while attempts still waited (the
// timeout came first, and they waited less than -stuck-after under no suspicious evidence).
const healthyBlocked = "healthy: no signature of a file-system locking bug was found; %s still waiting when the run ended"

// namer names the lockers of one result by id.
type namer map[int64]*analysis.Locker

func newNamer(lockers []analysis.Locker) namer {
	n := make(namer, len(lockers))
	for i := range lockers {
		n[lockers[i].ID] = &lockers[i]
	}
	return n
}

// program reports whether locker id is a process of a real program (lockprobe exec, watch): it
// has no locker id a user knows, and is named by pid and command line.
func (n namer) program(id int64) (*analysis.Locker, bool) {
	l, ok := n[id]
	return l, ok && l.Role == analysis.RoleProgram
}

// who names a locker as a sentence says it: "locker 3 (pid 4711 on node c12)", or for a
// program's process "pid 4711 (python3 race.py T) on node c12".
func (n namer) who(id int64) string {
	var pid int64
	node := "?"
	if l, ok := n[id]; ok {
		pid = l.PID
		if l.Node != "" {
			node = l.Node
		}
	}
	if l, ok := n.program(id); ok {
		return fmt.Sprintf("pid %d (%s) on node %s", pid, short(l.Command), node)
	}
	return fmt.Sprintf("locker %d (pid %d on node %s)", id, pid, node)
}

// members names a set of lockers: "lockers 1, 2", or "processes 4711, 4712" for a program's.
func (n namer) members(ids []int64) string {
	var pids []int64
	for _, id := range ids {
		if l, ok := n.program(id); ok {
			pids = append(pids, l.PID)
		}
	}
	if len(pids) == len(ids) && len(ids) > 0 {
		return "processes " + joinIDs(pids)
	}
	return "lockers " + joinIDs(ids)
}

// short cuts a command line for a sentence.
func short(cmd string) string {
	if len(cmd) > 60 {
		return cmd[:57] + "..."
	}
	return cmd
}

// party names someone briefly: "locker 3" (a program's process: "pid 4711"), "observer on
// c07", "foreign pid 77 on c07".
func (n namer) party(p analysis.Party) string {
	switch {
	case p.Locker >= 0:
		if l, ok := n.program(p.Locker); ok {
			return fmt.Sprintf("pid %d", l.PID)
		}
		return fmt.Sprintf("locker %d", p.Locker)
	case p.Observer:
		return "observer on " + p.Node
	case p.Mount:
		return "mount options of " + p.Node
	case p.Silence:
		return "controller, waiting for " + p.Node
	}
	return fmt.Sprintf("%s pid %d on %s", p.Class, p.PID, p.Node)
}

// ownerText says what an F_GETLK answer named.
func (n namer) ownerText(o analysis.Owner) string {
	held := fmt.Sprintf("holding a %s lock on %s", o.Mode, rangeText(o.Start, o.Len))
	switch o.Class {
	case semconv.OwnerNone:
		return "no conflicting lock"
	case semconv.OwnerSelf:
		return fmt.Sprintf("the waiter itself (pid %d) %s", o.PID, held)
	case semconv.OwnerLocker:
		return n.who(o.Locker) + " " + held
	}
	node := o.Node
	if node == "" {
		node = "?"
	}
	return fmt.Sprintf("a %s owner (pid %d on node %s) %s", o.Class, o.PID, node, held)
}

// lockText describes a request: "a posix write lock on [0, EOF) of {file}".
func lockText(l analysis.Lock) string {
	article := "a"
	if l.Kind == semconv.KindOFD {
		article = "an"
	}
	return fmt.Sprintf("%s %s %s lock on %s of %s", article, l.Kind, l.Mode, rangeText(l.Start, l.Len), fileText(l))
}

// fileText names the file of a lock as the user gave it: the path the locker opened, or the
// scenario's name for the file when no path is known. (In a run over several mounts the same
// file has a path per node; each sentence names the one its locker used.)
func fileText(l analysis.Lock) string {
	if l.Path != "" {
		return l.Path
	}
	return l.File
}

// rangeText renders a byte range as "[start, end)", EOF for a length of 0.
func rangeText(start, length int64) string {
	if length <= 0 {
		return "[" + itoa(start) + ", EOF)"
	}
	return "[" + itoa(start) + ", " + itoa(start+length) + ")"
}

// findingRange is the range a finding states: none when it names no file.
func findingRange(f *analysis.Finding) string {
	if f.File == "" {
		return ""
	}
	return rangeText(f.Start, f.Len)
}

// secs renders a duration in ns as seconds with one decimal ("28.4 s"), or ms when short: the
// unit of the sentences, where dur's three digits would read as false precision.
func secs(ns int64) string {
	if ns < 0 {
		ns = 0
	}
	if ns < 1e9 {
		return strconv.FormatFloat(float64(ns)/1e6, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(float64(ns)/1e9, 'f', 1, 64) + " s"
}

func joinIDs(ids []int64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = itoa(id)
	}
	return strings.Join(parts, ", ")
}

// Summary returns the verdict of res in one sentence, as verdict.json and the report say it.
func Summary(res *analysis.Result) string { return newNamer(res.Lockers).verdictSummary(res) }

// verdictSummary is the verdict in one sentence: its finding's, the healthy one, or why there
// is none.
func (n namer) verdictSummary(res *analysis.Result) string {
	if f := verdictFinding(res); f != nil {
		sum := n.summary(f)
		// A finding is read from what arrived: a release that never came reads as a hold that
		// never ended, so the reader must know the finding's ground is partial.
		if gap := evidenceGap(res); gap != "" {
			sum += "; but " + gap + ": this finding may rest on records that never arrived"
		}
		return sum
	}
	switch res.Verdict.Unjudged {
	case analysis.EmptyTrace:
		return "no verdict: the trace holds no lockprobe run"
	case analysis.StartFailed:
		return "no verdict: the run failed to start, and no locker ran its scenario"
	case analysis.NotStarted:
		why := "no verdict: the run ended before its scenario started"
		if r := res.Run.EndReason; r != "" {
			why += " (" + r + ")"
		}
		return why + ": nothing was tested"
	}
	blocked := 0
	for _, a := range res.Attempts {
		if a.Outcome == semconv.OutcomeBlocked {
			blocked++
		}
	}
	sum := healthySummary
	if blocked > 0 {
		still := "1 attempt was"
		if blocked != 1 {
			still = fmt.Sprintf("%d attempts were", blocked)
		}
		sum = fmt.Sprintf(healthyBlocked, still)
	}
	if gap := evidenceGap(res); gap != "" {
		sum += "; but " + gap + ": the verdict rests only on what arrived"
	}
	return sum
}

// evidenceGap says what part of a run's evidence never arrived — a node not heard again, lockers
// that ended without sending all they had, messages lost — or "" when none is missing. A healthy
// verdict over a partial trace must say so: what a silent node's lockers did is unknown.
func evidenceGap(res *analysis.Result) string {
	var parts []string
	for _, s := range res.Silences {
		if !s.Healed {
			parts = append(parts, fmt.Sprintf("node %s was never heard again after %s", s.Node, secs(s.From-res.Start)))
		}
	}
	gone := 0
	for _, l := range res.Lockers {
		if l.Exited && !l.Goodbye {
			gone++
		}
	}
	switch gone {
	case 0:
	case 1:
		parts = append(parts, "1 locker ended without its goodbye")
	default:
		parts = append(parts, fmt.Sprintf("%d lockers ended without their goodbye", gone))
	}
	if res.MessagesLost > 0 {
		parts = append(parts, fmt.Sprintf("%d messages were lost", res.MessagesLost))
	}
	return strings.Join(parts, " and ")
}

// summary says a finding in one sentence.
func (n namer) summary(f *analysis.Finding) string {
	want := lockText(f.Lock)
	switch d := f.Detail.(type) {
	case analysis.NobodyHolds:
		return fmt.Sprintf("%s has waited %s for %s that, according to its own F_GETLK, nobody holds: the wake-up never came — the signature of a lost wake-up",
			n.who(d.Waiter), secs(d.Waited), want)
	case analysis.HoldsItself:
		by := "F_GETLK"
		if d.Observer != "" {
			by = "F_GETLK from the observer on " + d.Observer
		}
		return fmt.Sprintf("%s has waited %s for %s that, according to %s, it already holds: the grant was never delivered — the signature of a lost lock callback",
			n.who(d.Waiter), secs(d.Waited), want, by)
	case analysis.NamedHolder:
		return fmt.Sprintf("%s is still waiting for %s that, according to F_GETLK of locker %d, it already holds: the grant was never delivered — the signature of a lost lock callback",
			n.who(d.Waiter), want, d.Asker)
	case analysis.ForeignOwner:
		var s string
		if d.AtEnd {
			s = fmt.Sprintf("%s was still waiting at the end, after %s, for %s held by %s pid %d on %s, which is no locker of this run",
				n.who(d.Waiter), secs(d.Waited), want, d.Owner.Class, d.Owner.PID, d.Owner.Node)
		} else {
			s = fmt.Sprintf("%s has waited %s for %s held by %s pid %d, which is no locker of this run",
				n.who(d.Waiter), secs(d.Waited), want, d.Owner.Class, d.Owner.PID)
		}
		if d.Remote {
			node := d.Owner.Node
			if node == "" {
				node = "?"
			}
			if d.Owner.PID == 0 {
				s += fmt.Sprintf("; pid 0 is what a FUSE file system (GlusterFS) answers for a holder that is no process of node %s: its holder runs on another node — run `lockprobe who %s` on the nodes that mount it",
					node, f.Path)
			} else {
				s += fmt.Sprintf("; pid %d is no process of node %s: on a file system shared across nodes its holder runs on another node — run `lockprobe who %s` on the nodes that mount it",
					d.Owner.PID, node, f.Path)
			}
		}
		return s
	case analysis.StaleOwner:
		if d.NeverGranted {
			return fmt.Sprintf("%s has waited %s for %s behind %s, which the file system names as holder but which was never granted such a lock",
				n.who(d.Waiter), secs(d.Waited), want, n.who(d.Owner))
		}
		return fmt.Sprintf("%s has waited %s for %s behind %s, which %s %s ago: the file system still reports the released lock — the signature of a stale holder",
			n.who(d.Waiter), secs(d.Waited), want, n.who(d.Owner), letGo(d), secs(d.Since))
	case analysis.Refusal:
		with := ""
		switch {
		case len(d.With) == 1:
			with = " with locker " + joinIDs(d.With)
		case len(d.With) > 1:
			with = " with lockers " + joinIDs(d.With)
		}
		cost := ""
		if p := d.Polled; p != nil {
			cost = fmt.Sprintf(" after %d tries over %s and a wait: the stall cost %s", p.Tries, secs(p.Took), secs(f.Duration))
		}
		return fmt.Sprintf("%s asked for %s and the file system refused it with EDEADLK%s: it detected the deadlock%s and broke it — the healthy outcome of a cycle",
			n.who(d.Requester), want, cost, with)
	case analysis.Cycle:
		return n.cycleSummary(f, d)
	case analysis.Overlap:
		return n.overlapSummary(f, d)
	case analysis.ImplicitRelease:
		return fmt.Sprintf("%s lost its posix %s lock on %s of %s when it closed another descriptor (slot %d) of the file: POSIX drops all of a process's locks on a file at any close",
			n.who(d.Locker), f.Mode, rangeText(f.Start, f.Len), fileText(f.Lock), d.Slot)
	case analysis.IdleHolder:
		doing := "doing something no snapshot shows"
		if d.Known {
			doing = stateText(d.Doing)
		}
		return fmt.Sprintf("%s has waited %s for %s: the chain of waits ends at %s, which holds the lock and waits for no lock — it is %s",
			n.who(d.Waiter), secs(d.Waited), want, n.who(d.Holder), doing)
	case analysis.LongHold:
		return fmt.Sprintf("%s was still waiting at the end, after %s, for %s: the chain of waits ends at %s, which holds the lock and waits for nothing — a long hold, not a hang",
			n.who(d.Waiter), secs(d.Waited), want, n.who(d.Holder))
	}
	return f.Class
}

// letGo says how a stale holder's owner let go of its lock.
func letGo(d analysis.StaleOwner) string {
	if d.Exited {
		return "exited (" + d.ExitStatus + ")"
	}
	switch d.How {
	case semconv.HoldClose:
		return "closed the file"
	case semconv.HoldExit:
		return "exited"
	case semconv.HoldConverted:
		return "converted it"
	}
	return "released it"
}

func (n namer) cycleSummary(f *analysis.Finding, d analysis.Cycle) string {
	parts := make([]string, len(d.Members))
	for i, m := range d.Members {
		owners := make([]string, len(m.Owners))
		for j, o := range m.Owners {
			owners[j] = n.party(o)
		}
		parts[i] = fmt.Sprintf("%s wants %s held by %s", n.who(m.Locker), lockText(m.Want), strings.Join(owners, " and "))
	}
	span := "one file"
	if d.Files > 1 {
		span = fmt.Sprintf("%d files", d.Files)
	}
	tail := fmt.Sprintf("the cycle has stood for %s and nothing broke it", secs(f.Duration))
	if b := d.Broken; b != nil {
		tail = fmt.Sprintf("the cycle stood until it was broken after %s, when the attempt of locker %d ended %s", secs(f.Duration), b.Locker, b.Outcome)
	}
	return fmt.Sprintf("deadlock: %s wait for each other in a cycle over %s — %s; %s",
		n.members(f.Lockers), span, strings.Join(parts, "; "), tail)
}

func (n namer) overlapSummary(f *analysis.Finding, d analysis.Overlap) string {
	s := fmt.Sprintf("mutual exclusion violated: %s and %s both held conflicting locks on %s of %s for %s (clock uncertainty %s)",
		n.who(d.Holders[0]), n.who(d.Holders[1]), rangeText(d.Range.Start, d.Range.Len), fileText(f.Lock), secs(f.Duration), secs(f.Uncertainty))
	if l := d.Lost; l != nil {
		how := "lost its connection to the file system (" + l.Errno + ")"
		if !l.Conn {
			how = "failed (F_GETLK through it returned " + l.Errno + ")"
		}
		s += fmt.Sprintf("; the client of locker %d on %s %s: the file system gave the lock away to locker %d while locker %d still believed it held it",
			l.Locker, l.Node, how, l.Other, l.Locker)
	}
	if nl := d.NodeLocal; nl != nil {
		s += fmt.Sprintf("; the cause is the mount option %s, which makes locks node-local (%s and %s are on different nodes): configuration, not a bug of the lock manager",
			nl.Option, nl.Nodes[0], nl.Nodes[1])
	}
	if p := d.Partition; p != nil {
		back := "it was heard again " + secs(p.To-p.From) + " later"
		if !p.Healed {
			back = "it was not heard again before the run ended"
		}
		s += fmt.Sprintf("; node %s, where locker %d held the lock, was cut off: nothing arrived from it from %s after the start (%s), and meanwhile the file system gave the lock to locker %d",
			p.Node, p.Locker, secs(p.After), back, p.Other)
		if p.Unlocked {
			s += fmt.Sprintf("; locker %d's unlock %s after the start succeeded: it never learned that it had lost the lock", p.Locker, secs(p.After+p.UnlockedAt-p.From))
		}
	}
	if c := d.Converting; c != nil {
		s += fmt.Sprintf("; locker %d was blocked converting its read lock to write when locker %d got its write lock: the file system dropped the read lock during the blocked conversion",
			c.Reader, c.Writer)
	}
	return s
}

// evidence says one piece of evidence in words.
func (n namer) evidence(e analysis.Evidence) string {
	switch x := e.Fact.(type) {
	case analysis.Answered:
		switch {
		case x.InCycle:
			return "F_GETLK for its request answered: " + n.ownerText(x.Owner)
		case x.Again:
			return "F_GETLK for its own request, answered again after that lock ended: " + n.ownerText(x.Owner)
		}
		return "F_GETLK for its own request answered: " + n.ownerText(x.Owner)
	case analysis.Observed:
		if x.Again {
			return fmt.Sprintf("F_GETLK for %s over the whole file, after that lock ended, answered: %s", x.Query, n.ownerText(x.Owner))
		}
		return fmt.Sprintf("F_GETLK for %s over the whole file answered: %s", x.Query, n.ownerText(x.Owner))
	case analysis.LockEnded:
		return fmt.Sprintf("its %s lock on %s ended (%s)", x.Lock.Mode, rangeText(x.Lock.Start, x.Lock.Len), x.How)
	case analysis.Refused:
		return fmt.Sprintf("the lock call returned %s after %s", x.Errno, secs(x.Took))
	case analysis.WaitsFor:
		if x.InChain {
			return fmt.Sprintf("waits for %s (%s)", n.party(x.To), waitLabel(x.Want, x.Seen))
		}
		return fmt.Sprintf("waits for %s: it wants %s (seen by %s)", n.party(x.To), lockText(x.Want), x.Seen)
	case analysis.Granted:
		until := x.How.String()
		if x.Open {
			until = "the end (" + until + ")"
		}
		return fmt.Sprintf("granted a %s %s lock on %s of %s, held until %s", x.Lock.Kind, x.Lock.Mode, rangeText(x.Lock.Start, x.Lock.Len), fileText(x.Lock), until)
	case analysis.ClientFailed:
		what := "its F_GETLK"
		switch x.Asked {
		case analysis.AskedObserver:
			what = "F_GETLK for " + x.Query + " over the whole file"
		case analysis.AskedOwnRequest:
			what = "F_GETLK for its own request"
		}
		return fmt.Sprintf("%s failed with %s: the client on %s could not reach the file system", what, x.Errno, x.Node)
	case analysis.Converting:
		return fmt.Sprintf("was waiting to convert its read lock to %s when locker %d was granted its %s lock", lockText(x.Want), x.To, x.ToMode)
	case analysis.NodeSilent:
		if !x.Healed {
			return fmt.Sprintf("nothing arrived from node %s for the last %s of the run: it was cut off and did not come back", x.Node, secs(x.To-x.From))
		}
		return fmt.Sprintf("nothing arrived from node %s for %s: it was cut off, then heard again", x.Node, secs(x.To-x.From))
	case analysis.NodeLocalLocks:
		return fmt.Sprintf("the file system is %s: each node arbitrates its own locks and none across nodes", x.FS)
	case analysis.InState:
		text := "process state: " + stateText(x)
		if x.Stack != "" {
			text += "; kernel stack " + x.Stack
		}
		return text
	case analysis.PollFailed:
		return fmt.Sprintf("%d tries of the same request failed (%s) over %s before it waited", x.Tries, x.Errno, secs(x.Took))
	case analysis.ClosedSlot:
		return fmt.Sprintf("closed descriptor slot %d of %s; its lock was taken through slot %d", x.Slot, fileText(x.Lock), x.LockSlot)
	}
	return ""
}

// waitLabel labels a wait-for edge: what the waiter wants and which evidence showed the wait,
// "posix write [0, EOF) {file} (getlk+trace)".
func waitLabel(want analysis.Lock, seen string) string {
	return fmt.Sprintf("%s %s %s %s (%s)", want.Kind, want.Mode, rangeText(want.Start, want.Len), fileText(want), seen)
}

// edgeLabel labels an edge of the wait-for graph.
func edgeLabel(e analysis.GraphEdge) string { return waitLabel(e.Lock, strings.Join(e.Sources, "+")) }

// nodeLabel labels an owner of the wait-for graph, on two lines.
func (n namer) nodeLabel(g analysis.GraphNode) string {
	if l, ok := n.program(g.Locker); ok {
		return fmt.Sprintf("pid %d on %s\n%s", g.PID, g.Node, short(l.Command))
	}
	if g.Locker >= 0 {
		return fmt.Sprintf("locker %d\npid %d on %s", g.Locker, g.PID, g.Node)
	}
	return fmt.Sprintf("%s pid %d\non %s", g.Class, g.PID, g.Node)
}

// processStates are the /proc state letters in words.
var processStates = map[string]string{"R": "running", "S": "sleeping", "D": "in uninterruptible sleep", "T": "stopped",
	"t": "stopped by a tracer", "Z": "a zombie", "I": "idle"}

// stateText says what a process does: "sleeping (S) in hrtimer_nanosleep, in no lock call".
func stateText(st analysis.InState) string {
	state := processStates[st.State]
	if state == "" {
		state = "in state " + st.State
	}
	text := state + " (" + st.State + ")"
	if st.Wchan != "" && st.Wchan != "0" {
		text += " in " + st.Wchan
	}
	if st.Inflight != "" {
		return text + ", in " + st.Inflight
	}
	return text + ", in no lock call"
}
