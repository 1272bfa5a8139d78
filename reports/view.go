package reports

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
)

// Schema names the verdict.json format; it changes only when a field changes meaning or goes away.
const Schema = "lockprobe.verdict/1"

// View is the one view model behind verdict.json, the HTML report and the terminal summary. Its
// slices are never nil, so the JSON says [] rather than null and templates need no guards.
// VERDICT_JSON.md documents every field.
type View struct {
	Schema     string        `json:"schema"`
	Versions   Versions      `json:"versions"`
	Verdict    VerdictView   `json:"verdict"`
	Run        RunView       `json:"run"`
	Clock      ClockView     `json:"clock"`
	Findings   []FindingView `json:"findings"`
	Lockers    []LockerView  `json:"lockers"`
	Graph      GraphView     `json:"graph"`
	Statistics StatsView     `json:"statistics"`
	Hosts      []HostView    `json:"hosts"`
	ProcLocks  []ProcLockV   `json:"proc_locks"`

	// The page draws besides every attempt, hold and observer answer, which verdict.json
	// leaves to trace.jsonl.
	Attempts     []*analysis.Attempt    `json:"-"`
	Holds        []*analysis.Hold       `json:"-"`
	Observers    []analysis.Locker      `json:"-"`
	Observations []analysis.Observation `json:"-"`
	names        namer                  // the lockers' names, for the page's own words
}

// Versions are the versions of the tool and of what it ran on.
type Versions struct {
	Lockprobe string   `json:"lockprobe"`
	Kernels   []string `json:"kernels"`
	Lustre    []string `json:"lustre"`
}

// VerdictView is the run's conclusion.
type VerdictView struct {
	Class              string  `json:"class"`
	Exit               int     `json:"exit"`
	Title              string  `json:"title"`
	Summary            string  `json:"summary"`
	Meaning            string  `json:"meaning"`
	Finding            int     `json:"finding"`
	Lockers            []int64 `json:"lockers"`
	DetectionLatencyNS int64   `json:"detection_latency_ns"`
	// Unjudged says why there is no verdict (class no-verdict): empty-trace, start-failed or
	// not-started; absent otherwise.
	Unjudged string `json:"unjudged,omitempty"`
}

// RunView is what the run was and how it ended.
type RunView struct {
	TraceID      string   `json:"trace_id"`
	Command      string   `json:"command"`
	Scenario     string   `json:"scenario"`
	ScenarioText string   `json:"scenario_text"`
	Procs        int64    `json:"procs"`
	TimeoutNS    int64    `json:"timeout_ns"`
	PollNS       int64    `json:"poll_ns"`
	StartNS      int64    `json:"start_ns"`
	EndNS        int64    `json:"end_ns"`
	DurationNS   int64    `json:"duration_ns"`
	EndReason    string   `json:"end_reason"`
	MessagesLost int64    `json:"messages_lost"`
	Truncated    bool     `json:"truncated"`
	Killed       []string `json:"killed"`
	Unresponsive []string `json:"unresponsive"`
	// NoGoodbye names the members that ended without their goodbye (killed, crashed, fell
	// silent): what they had not sent by then is missing from the trace.
	NoGoodbye    []string `json:"no_goodbye"`
	StuckAfterNS int64    `json:"stuck_after_ns"`
	// Launcher (local, slurm, ssh), Delivery (how the binary reached the nodes) and Nodes are
	// set for a run across the nodes of a cluster.
	Launcher string   `json:"launcher"`
	Delivery string   `json:"delivery"`
	Nodes    []string `json:"nodes"`
}

// ClockView says how far the timestamps can be trusted: every instant is on the controller's
// clock, each locker's within its uncertainty.
type ClockView struct {
	Reference     string `json:"reference"`
	UncertaintyNS int64  `json:"uncertainty_ns"`
}

// EvidenceView is one fact a finding rests on.
type EvidenceView struct {
	AtNS    int64  `json:"at_ns"`
	SinceNS int64  `json:"since_start_ns"`
	Source  string `json:"source"`
	By      string `json:"by"`
	Text    string `json:"text"`
}

// FindingView is one detected signature.
type FindingView struct {
	Class              string         `json:"class"`
	Title              string         `json:"title"`
	Exit               int            `json:"exit"`
	Summary            string         `json:"summary"`
	Lockers            []int64        `json:"lockers"`
	Attempts           []string       `json:"attempts"`
	Cycle              []int64        `json:"cycle"`
	Evidence           []EvidenceView `json:"evidence"`
	FormedNS           int64          `json:"formed_ns"`
	DetectedNS         int64          `json:"detected_ns"`
	DurationNS         int64          `json:"duration_ns"`
	Resolved           bool           `json:"resolved"`
	File               string         `json:"file"`
	Path               string         `json:"path"`
	Kind               string         `json:"kind"`
	Mode               string         `json:"mode"`
	Start              int64          `json:"start"`
	Len                int64          `json:"len"`
	Range              string         `json:"range"`
	ClockUncertaintyNS int64          `json:"clock_uncertainty_ns"`
	// Cause is set when the finding follows from configuration (analysis.CauseMountOption).
	Cause string `json:"cause,omitempty"`
}

// LockerView is one locker: who it is, what it did, and its state at the end.
type LockerView struct {
	ID   int64  `json:"id"`
	Node string `json:"node"`
	Host string `json:"host"`
	PID  int64  `json:"pid"`
	// Command is the command line of a real program's process (exec, watch): such a process
	// is named by pid and command line, its ID is only the trace's.
	Command     string   `json:"command"`
	State       string   `json:"state"`
	Wchan       string   `json:"wchan"`
	Stack       []string `json:"stack"`
	Inflight    string   `json:"inflight"`
	LastCommand string   `json:"last_command"`
	LastOutcome string   `json:"last_outcome"`
	Attempts    int      `json:"attempts"`
	Waits       int      `json:"waits"`
	Holds       int      `json:"holds"`
	WaitNS      int64    `json:"wait_ns"`
	HoldNS      int64    `json:"hold_ns"`
	// Rechecks counts a program's granted calls that took a lock it held again unchanged
	// (casacore re-checks on every table access): a holder that re-checks is at work.
	Rechecks           int64          `json:"rechecks"`
	Outcomes           map[string]int `json:"outcomes"`
	Exit               string         `json:"exit"`
	ClockOffsetNS      int64          `json:"clock_offset_ns"`
	ClockUncertaintyNS int64          `json:"clock_uncertainty_ns"`
	InVerdict          bool           `json:"in_verdict"`
	ExitedNS           int64          `json:"-"` // when its process ended, 0 while it ran (the timeline's mark)
}

// GraphNodeView is one lock owner of the wait-for graph.
type GraphNodeView struct {
	ID      int64  `json:"id"`
	Locker  int64  `json:"locker"`
	Class   string `json:"class"`
	Node    string `json:"node"`
	PID     int64  `json:"pid"`
	Waiting bool   `json:"waiting"`
	Holding bool   `json:"holding"`
	Label   string `json:"label"`
	InCycle bool   `json:"in_cycle"`
}

// GraphEdgeView is "waiter waits for owner".
type GraphEdgeView struct {
	From    int64    `json:"from"`
	To      int64    `json:"to"`
	Attempt string   `json:"attempt"`
	Kind    string   `json:"kind"`
	Mode    string   `json:"mode"`
	Range   string   `json:"range"`
	File    string   `json:"file"`
	Path    string   `json:"path"`
	Sources []string `json:"sources"`
	SinceNS int64    `json:"since_ns"`
	InCycle bool     `json:"in_cycle"`
}

// GraphView is the wait-for graph at the verdict's instant.
type GraphView struct {
	AtNS   int64           `json:"at_ns"`
	Nodes  []GraphNodeView `json:"nodes"`
	Edges  []GraphEdgeView `json:"edges"`
	Cycles [][]int64       `json:"cycles"`
	SCCs   [][]int64       `json:"sccs"`
}

// Percentiles summarise durations in ns.
type Percentiles struct {
	Count int   `json:"count"`
	P50   int64 `json:"p50_ns"`
	P90   int64 `json:"p90_ns"`
	P99   int64 `json:"p99_ns"`
	Max   int64 `json:"max_ns"`
}

// Bucket is one bar of the attempt-duration histogram: [lo, hi).
type Bucket struct {
	LoNS    int64 `json:"lo_ns"`
	HiNS    int64 `json:"hi_ns"`
	Granted int   `json:"granted"`
	Other   int   `json:"other"`
}

// StarvedView is a waiter that later requests overtook.
type StarvedView struct {
	Locker     int64  `json:"locker"`
	Attempt    string `json:"attempt"`
	File       string `json:"file"`
	Mode       string `json:"mode"`
	PassedOver int    `json:"passed_over"`
	WaitNS     int64  `json:"wait_ns"`
	Granted    bool   `json:"granted"`
}

// StatsView holds the run's statistics.
type StatsView struct {
	Attempts   int                    `json:"attempts"`
	Waits      int                    `json:"waits"`
	Holds      int                    `json:"holds"`
	Outcomes   map[string]int         `json:"outcomes"`
	WaitByMode map[string]Percentiles `json:"wait_by_mode"`
	HandOff    Percentiles            `json:"hand_off"`
	Fairness   FairnessView           `json:"fairness"`
	Starved    []StarvedView          `json:"starved"`
	Fire       FireView               `json:"fire"`
	Histogram  []Bucket               `json:"attempt_histogram"`
}

// FairnessView compares grant order with request order.
type FairnessView struct {
	Pairs      int64   `json:"pairs"`
	Inversions int64   `json:"inversions"`
	Ratio      float64 `json:"ratio"`
}

// FireView says how closely attempts scheduled for one instant started.
type FireView struct {
	Instants int   `json:"instants"`
	MedianNS int64 `json:"median_ns"`
	P99NS    int64 `json:"p99_ns"`
	MaxNS    int64 `json:"max_ns"`
}

// HostView holds the facts of one node.
type HostView struct {
	Node             string            `json:"node"`
	FSType           string            `json:"fs_type"`
	MountType        string            `json:"mount_type"`
	MountPoint       string            `json:"mount_point"`
	MountSource      string            `json:"mount_source"`
	LockOptions      string            `json:"lock_options"`
	MountOptions     string            `json:"mount_options"`
	Kernel           string            `json:"kernel"`
	LustreVersion    string            `json:"lustre_version"`
	LockprobeVersion string            `json:"lockprobe_version"`
	Lockers          []int64           `json:"lockers"`
	Facts            map[string]string `json:"facts"`
	// The node's clock to the controller's, and the bound every comparison with its instants
	// is widened by.
	ClockOffsetNS      int64 `json:"clock_offset_ns"`
	ClockUncertaintyNS int64 `json:"clock_uncertainty_ns"`
	// Silences are the intervals nothing arrived from the node (partitions), after the
	// scenario's start.
	Silences []SilenceView `json:"silences"`
}

// SilenceView is an interval in which nothing arrived from a node: from FromNS to ToNS after
// the scenario's start; Healed when the node came back before the run ended.
type SilenceView struct {
	FromNS  int64   `json:"from_ns"`
	ToNS    int64   `json:"to_ns"`
	Healed  bool    `json:"healed"`
	Lockers []int64 `json:"lockers"`
}

// ProcLockV is one /proc/locks line of the run's file at the end of the run.
type ProcLockV struct {
	AtNS    int64  `json:"at_ns"`
	Node    string `json:"node"`
	ID      int64  `json:"id"`
	Blocker int64  `json:"blocker"`
	Class   string `json:"class"`
	Mode    string `json:"mode"`
	PID     int64  `json:"pid"`
	Locker  int64  `json:"locker"`
	Start   int64  `json:"start"`
	End     int64  `json:"end"`
	File    string `json:"file"`
	Raw     string `json:"raw"`
}

// NewView builds the view model of a result. A nil result gives an empty, valid view.
func NewView(res *analysis.Result, opts Options) *View {
	if res == nil {
		res = &analysis.Result{Verdict: analysis.Verdict{Class: analysis.ClassHealthy, Finding: -1}}
	}
	v := &View{
		Schema:    Schema,
		Versions:  Versions{Lockprobe: opts.Version, Kernels: []string{}, Lustre: []string{}},
		Findings:  make([]FindingView, 0, len(res.Findings)),
		Lockers:   make([]LockerView, 0, len(res.Lockers)),
		Hosts:     make([]HostView, 0, len(res.Hosts)),
		ProcLocks: make([]ProcLockV, 0, len(res.ProcLocks)),
		Attempts:  nonNil(res.Attempts), Holds: nonNil(res.Holds), Observers: nonNil(res.Observers),
		Observations: nonNil(res.Observations), names: newNamer(res.Lockers),
	}
	v.Run = runView(res, opts)
	v.Clock = ClockView{Reference: "controller"}
	for _, l := range res.Lockers {
		v.Clock.UncertaintyNS = max(v.Clock.UncertaintyNS, l.Uncertainty)
	}
	for i := range res.Findings {
		f := &res.Findings[i]
		v.Findings = append(v.Findings, v.names.findingView(f, res.Start))
		v.Clock.UncertaintyNS = max(v.Clock.UncertaintyNS, f.Uncertainty)
	}
	v.Verdict = VerdictView{
		Class: res.Verdict.Class, Exit: res.Verdict.Exit, Title: classTitle(res.Verdict.Class),
		Summary: v.names.verdictSummary(res), Meaning: classMeaning(res.Verdict.Class),
		Finding: res.Verdict.Finding, Lockers: []int64{}, DetectionLatencyNS: int64(opts.DetectionLatency),
	}
	if res.Verdict.Unjudged != analysis.Judged {
		v.Verdict.Unjudged = res.Verdict.Unjudged.String()
	}
	if f := verdictFinding(res); f != nil {
		v.Verdict.Lockers = nonNil(f.Lockers)
	}
	v.Lockers = lockerViews(res, v.Verdict.Lockers)
	v.Graph = v.names.graphView(res.Graph)
	v.Statistics = statsView(res)
	v.Hosts, v.Versions.Kernels, v.Versions.Lustre = hostViews(res.Hosts, res.Silences, res.Run.StartNS)
	if v.Versions.Lockprobe == "" {
		for _, h := range v.Hosts {
			if h.LockprobeVersion != "" {
				v.Versions.Lockprobe = h.LockprobeVersion
				break
			}
		}
	}
	for _, p := range res.ProcLocks {
		v.ProcLocks = append(v.ProcLocks, ProcLockV{AtNS: p.At, Node: p.Node, ID: p.ID, Blocker: p.Blocker,
			Class: p.Class, Mode: p.Mode, PID: p.PID, Locker: p.Locker,
			Start: p.Start, End: p.End, File: p.File, Raw: p.Raw})
	}
	return v
}

func runView(res *analysis.Result, opts Options) RunView {
	r := res.Run
	rv := RunView{
		TraceID: r.TraceID, Command: r.Command, Scenario: r.Scenario, ScenarioText: r.ScenarioText,
		Procs: r.Procs, TimeoutNS: r.TimeoutNS, PollNS: r.PollNS, StartNS: res.Start, EndNS: res.End,
		EndReason: opts.EndReason, MessagesLost: max(res.MessagesLost, r.MessagesLost),
		Truncated: res.Truncated, Killed: nonNil(orList(opts.Killed, res.Run.Killed)), Unresponsive: nonNil(opts.Unresponsive),
		StuckAfterNS: res.StuckAfter,
		Launcher:     r.Launcher, Delivery: r.Delivery, Nodes: nonNil(r.Nodes),
	}
	if rv.EndReason == "" {
		rv.EndReason = r.EndReason
	}
	rv.NoGoodbye = []string{}
	for _, l := range append(slices.Clone(res.Lockers), res.Observers...) {
		if !l.Exited || l.Goodbye {
			continue
		}
		who := fmt.Sprintf("locker %d", l.ID)
		if l.Role == "observer" {
			who = "observer on " + l.Node
		}
		how := l.ExitStatus
		if l.Unsent > 0 {
			how += fmt.Sprintf("; %d records it had queued never arrived", l.Unsent)
		}
		rv.NoGoodbye = append(rv.NoGoodbye, fmt.Sprintf("%s (%s)", who, how))
	}
	if rv.StartNS == 0 {
		rv.StartNS = r.Begin
	}
	if rv.EndNS > rv.StartNS && rv.StartNS > 0 {
		rv.DurationNS = rv.EndNS - rv.StartNS
	}
	return rv
}

func verdictFinding(res *analysis.Result) *analysis.Finding {
	i := res.Verdict.Finding
	if i < 0 || i >= len(res.Findings) {
		return nil
	}
	return &res.Findings[i]
}

func (n namer) findingView(f *analysis.Finding, start int64) FindingView {
	fv := FindingView{
		Class: f.Class, Title: classTitle(f.Class), Exit: f.Exit, Summary: n.summary(f),
		Lockers: nonNil(f.Lockers), Attempts: nonNil(f.Attempts), Cycle: nonNil(f.Cycle),
		Evidence: make([]EvidenceView, 0, len(f.Evidence)), FormedNS: f.FormedAt, DetectedNS: f.DetectedAt,
		DurationNS: f.Duration, Resolved: f.Resolved, File: f.File, Path: f.Path, Kind: f.Kind.String(), Mode: f.Mode.String(),
		Start: f.Start, Len: f.Len, Range: findingRange(f), ClockUncertaintyNS: f.Uncertainty, Cause: f.Cause,
	}
	for _, e := range f.Evidence {
		fv.Evidence = append(fv.Evidence, EvidenceView{AtNS: e.At, SinceNS: since(e.At, start), Source: e.Source, By: n.party(e.By), Text: n.evidence(e)})
	}
	return fv
}

// since is t relative to the run's start, 0 when either is unknown.
func since(t, start int64) int64 {
	if t == 0 || start == 0 {
		return 0
	}
	return t - start
}

func lockerViews(res *analysis.Result, inVerdict []int64) []LockerView {
	sums := map[int64]analysis.LockerSummary{}
	for _, s := range res.Summaries {
		sums[s.Locker] = s
	}
	last := map[int64]string{}
	for _, a := range res.Attempts { // sorted by begin: the last one wins
		last[a.Locker] = a.Outcome.String()
	}
	hot := map[int64]bool{}
	for _, id := range inVerdict {
		hot[id] = true
	}
	out := make([]LockerView, 0, len(res.Lockers))
	for _, l := range res.Lockers {
		s := sums[l.ID]
		lv := LockerView{
			ID: l.ID, Node: l.Node, Host: l.Host, PID: l.PID, Command: l.Command, State: s.State, Wchan: s.Wchan,
			Stack: nonNil(s.Stack), Inflight: s.Inflight, LastCommand: s.LastCommand, LastOutcome: last[l.ID],
			Attempts: s.Attempts, Waits: s.Waits, Holds: s.Holds, WaitNS: s.WaitNS, HoldNS: s.HoldNS, Rechecks: s.Rechecks,
			Outcomes: byName(s.Outcomes), Exit: s.Exit, ClockOffsetNS: l.Offset, ClockUncertaintyNS: l.Uncertainty,
			InVerdict: hot[l.ID],
		}
		if l.Exited {
			lv.ExitedNS = l.ExitAt
		}
		out = append(out, lv)
	}
	return out
}

func (names namer) graphView(g *analysis.WaitGraph) GraphView {
	gv := GraphView{Nodes: []GraphNodeView{}, Edges: []GraphEdgeView{}, Cycles: [][]int64{}, SCCs: [][]int64{}}
	if g == nil {
		return gv
	}
	gv.AtNS = g.At
	// Every edge inside a strongly connected component is part of the knot, not only those of
	// the one shortest cycle the analysis names: N readers upgrading at once wait on all others.
	comp := map[int64]int{}
	for i, scc := range g.SCCs {
		gv.SCCs = append(gv.SCCs, nonNil(scc))
		for _, id := range scc {
			comp[id] = i + 1
		}
	}
	for _, c := range g.Cycles {
		gv.Cycles = append(gv.Cycles, nonNil(c))
		for _, id := range c {
			if comp[id] == 0 {
				comp[id] = -1 // a cycle without its component: still in a cycle
			}
		}
	}
	cycleEdge := map[[2]int64]bool{}
	for _, c := range g.Cycles {
		for i, id := range c {
			cycleEdge[[2]int64{id, c[(i+1)%len(c)]}] = true
		}
	}
	for _, n := range g.Nodes {
		gv.Nodes = append(gv.Nodes, GraphNodeView{ID: n.ID, Locker: n.Locker, Class: n.Class.String(), Node: n.Node, PID: n.PID,
			Waiting: n.Waiting, Holding: n.Holding, Label: names.nodeLabel(n), InCycle: comp[n.ID] != 0})
	}
	for _, e := range g.Edges {
		in := cycleEdge[[2]int64{e.From, e.To}] || (comp[e.From] > 0 && comp[e.From] == comp[e.To])
		gv.Edges = append(gv.Edges, GraphEdgeView{From: e.From, To: e.To, Attempt: e.Attempt, Kind: e.Kind.String(), Mode: e.Mode.String(),
			Range: rangeText(e.Start, e.Len), File: e.File, Path: e.Path, Sources: nonNil(e.Sources), SinceNS: e.Since, InCycle: in})
	}
	return gv
}

func statsView(res *analysis.Result) StatsView {
	st := res.Stats
	sv := StatsView{
		Attempts: st.Attempts, Waits: st.Waits, Holds: st.Holds, Outcomes: byName(st.Outcomes),
		WaitByMode: map[string]Percentiles{}, HandOff: Percentiles(st.HandOff),
		Fairness: FairnessView(st.Fairness), Starved: make([]StarvedView, 0, len(st.Starved)),
		Fire:      FireView{Instants: len(st.Fire.Instants), MedianNS: st.Fire.Median, P99NS: st.Fire.P99, MaxNS: st.Fire.Max},
		Histogram: histogram(res),
	}
	for mode, p := range st.WaitByMode {
		sv.WaitByMode[mode.String()] = Percentiles(p)
	}
	for _, s := range st.Starved {
		sv.Starved = append(sv.Starved, StarvedView{Locker: s.Locker, Attempt: s.Attempt, File: s.File, Mode: s.Mode.String(),
			PassedOver: s.PassedOver, WaitNS: s.WaitNS, Granted: s.Granted})
	}
	return sv
}

func hostViews(hosts []analysis.HostFacts, silences []analysis.Silence, start int64) (out []HostView, kernels, lustre []string) {
	out = make([]HostView, 0, len(hosts))
	kset, lset := map[string]bool{}, map[string]bool{}
	for _, h := range hosts {
		f := h.Facts
		if f == nil {
			f = map[string]string{}
		}
		hv := HostView{
			Node: h.Node, FSType: f["fs.type"], MountType: f["fs.mount.type"], MountPoint: f["fs.mount.point"],
			MountSource: f["fs.mount.source"], LockOptions: f["fs.lock.options"], MountOptions: f["fs.mount.options"],
			Kernel: f["os.kernel"], LustreVersion: f["lustre.version"], LockprobeVersion: f["lockprobe.version"],
			Lockers: nonNil(h.Lockers), Facts: f,
			ClockOffsetNS: h.ClockOffset, ClockUncertaintyNS: h.ClockUncertainty, Silences: []SilenceView{},
		}
		for _, sl := range silences {
			if sl.Node == h.Node {
				hv.Silences = append(hv.Silences, SilenceView{FromNS: sl.From - start, ToNS: sl.To - start, Healed: sl.Healed, Lockers: nonNil(sl.Lockers)})
			}
		}
		kset[hv.Kernel], lset[hv.LustreVersion] = true, true
		out = append(out, hv)
	}
	return out, setList(kset), setList(lset)
}

func setList(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// byName keys counts by the values' names, as verdict.json says them; never nil.
func byName[K interface {
	comparable
	String() string
}](m map[K]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, n := range m {
		out[k.String()] = n
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// wallTime renders a unix ns instant in UTC, for the axis caption.
func wallTime(ns int64) string {
	if ns <= 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format("2006-01-02 15:04:05.000000 UTC")
}

// orList returns a unless it is empty, else b.
func orList(a, b []string) []string {
	if len(a) > 0 {
		return a
	}
	return b
}
