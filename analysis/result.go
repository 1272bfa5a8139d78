package analysis

import (
	"fmt"
	"sort"
	"strings"
)

// Finding classes.
const (
	ClassHealthy           = "healthy"
	ClassDeadlock          = "deadlock"
	ClassFSDetected        = "fs-detected-deadlock"
	ClassLostWakeup        = "lost-wakeup"
	ClassLostCallback      = "lost-callback"
	ClassStaleHolder       = "stale-holder"
	ClassForeignHolder     = "foreign-holder"
	ClassLongHold          = "long-hold"
	ClassExclusionViolated = "exclusion-violated"
	ClassImplicitRelease   = "implicit-release"
	// ClassIdleHolder: a program's waiter stuck behind a live holder that is in no lock call
	// (asleep, stopped, in another syscall).
	ClassIdleHolder = "idle-holder"
	// ClassNoVerdict: the trace holds no run that could be judged — it is empty, or its run
	// never started its scenario (a failed start, an interrupt before every locker was ready).
	// A run that saw nothing is not healthy.
	ClassNoVerdict = "no-verdict"
)

// Exit statuses of a verdict (DESIGN.md).
const (
	ExitHealthy   = 0
	ExitNoVerdict = 1 // the tool's error status: there was nothing to judge
	ExitDeadlock  = 3
	ExitStuck     = 4
	ExitExclusion = 5
)

// classExit gives each class its exit status, and rank orders classes of one exit status
// (lower first): the verdict is the most severe finding.
var classExit = map[string]int{
	ClassDeadlock: ExitDeadlock, ClassFSDetected: ExitHealthy, ClassLostWakeup: ExitStuck,
	ClassLostCallback: ExitStuck, ClassStaleHolder: ExitStuck, ClassForeignHolder: ExitStuck,
	ClassLongHold: ExitHealthy, ClassExclusionViolated: ExitExclusion, ClassImplicitRelease: ExitHealthy,
	ClassIdleHolder: ExitStuck,
}

var classRank = map[string]int{
	ClassExclusionViolated: 0, ClassDeadlock: 1, ClassLostCallback: 2, ClassLostWakeup: 3,
	ClassStaleHolder: 4, ClassForeignHolder: 5, ClassFSDetected: 6, ClassLongHold: 7, ClassImplicitRelease: 8,
	ClassIdleHolder: 5,
}

// severity orders exit statuses: 5 > 3 > 4 > 0.
func severity(exit int) int {
	switch exit {
	case ExitExclusion:
		return 3
	case ExitDeadlock:
		return 2
	case ExitStuck:
		return 1
	}
	return 0
}

// Evidence is one fact a finding rests on, as data: the reports say it in words.
type Evidence struct {
	At     int64
	Source string // getlk | observer | proc-locks | trace | snapshot | errno
	By     Party  // who saw it
	Fact   Fact   // what it saw: one of the Fact types of facts.go
}

// Finding is one detected signature: what the analysis concluded and the facts it rests on,
// as data. The reports put both into words.
type Finding struct {
	Class    string
	Exit     int
	Lockers  []int64
	Attempts []string
	Cycle    []int64 // graph node ids of the cycle, for deadlocks
	Evidence []Evidence
	// Lock is the request the finding is about (File empty when there is none).
	Lock
	FormedAt    int64 // when the condition began
	DetectedAt  int64 // the instant of the check that found it
	Duration    int64 // how long the condition lasted (to the check or its end)
	Resolved    bool  // the condition ended before the run did
	Uncertainty int64 // the clock bound the conclusion rests on
	// Cause says, when the evidence shows it, that the finding follows from configuration
	// rather than a bug (CauseMountOption); "" otherwise.
	Cause string
	// Detail is what the finding says beyond its class: one of the Detail types of facts.go.
	Detail Detail
}

// CauseMountOption: the file system does what its mount options ask (Lustre -o localflock:
// no exclusion across nodes).
const CauseMountOption = "mount-option"

// Verdict is the run's conclusion: the most severe finding, or healthy.
type Verdict struct {
	Class   string
	Exit    int
	Finding int // index into Result.Findings, -1 when healthy
	// Unjudged says why there is no verdict (Class ClassNoVerdict); Judged otherwise.
	Unjudged Unjudged
}

// Unjudged says why a trace has no verdict: a run that saw nothing is not healthy.
type Unjudged uint8

// Why a trace has no verdict.
const (
	Judged      Unjudged = iota
	EmptyTrace           // the trace holds no lockprobe run
	StartFailed          // the run failed to start: no locker ran its scenario
	NotStarted           // the run ended (interrupted, timed out) before its scenario started
)

var unjudgedNames = [...]string{Judged: "judged", EmptyTrace: "empty-trace", StartFailed: "start-failed", NotStarted: "not-started"}

func (u Unjudged) String() string {
	if int(u) < len(unjudgedNames) {
		return unjudgedNames[u]
	}
	return fmt.Sprintf("unjudged(%d)", uint8(u))
}

// Result is everything the analysis found, ready for the reports.
type Result struct {
	Verdict      Verdict
	Findings     []Finding
	Run          Run
	Start        int64
	End          int64
	Truncated    bool
	MessagesLost int64
	StuckAfter   int64
	Lockers      []Locker
	Observers    []Locker
	Summaries    []LockerSummary
	Hosts        []HostFacts
	Silences     []Silence // the nodes' silences (partitions), by start
	Attempts     []*Attempt
	Holds        []*Hold
	Observations []Observation
	Getlks       []Getlk
	States       []ProcState
	ProcLocks    []ProcLock
	Graph        *WaitGraph // the wait-for graph at the verdict's instant
	Stats        Stats
	// Semantics is how the file system arbitrates locks, read from the lockers' facts: it
	// decides which requests conflict.
	Semantics Semantics
}

// newFinding fills in the derived fields of a finding.
func newFinding(class string, f Finding) Finding {
	f.Class = class
	f.Exit = classExit[class]
	if f.Lockers == nil {
		f.Lockers = []int64{}
	}
	if f.Attempts == nil {
		f.Attempts = []string{}
	}
	if f.Cycle == nil {
		f.Cycle = []int64{}
	}
	if f.Evidence == nil {
		f.Evidence = []Evidence{}
	}
	sort.SliceStable(f.Evidence, func(i, j int) bool { return f.Evidence[i].At < f.Evidence[j].At })
	return f
}

// sortFindings orders findings most severe first, then by when they formed.
func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		x, y := fs[i], fs[j]
		if severity(x.Exit) != severity(y.Exit) {
			return severity(x.Exit) > severity(y.Exit)
		}
		if classRank[x.Class] != classRank[y.Class] {
			return classRank[x.Class] < classRank[y.Class]
		}
		if x.FormedAt != y.FormedAt {
			return x.FormedAt < y.FormedAt
		}
		return fmt.Sprint(x.Lockers, x.Attempts) < fmt.Sprint(y.Lockers, y.Attempts)
	})
}

// verdictOf picks the most severe of sorted findings.
func verdictOf(fs []Finding, why Unjudged) Verdict {
	if why != Judged {
		return Verdict{Class: ClassNoVerdict, Exit: ExitNoVerdict, Finding: -1, Unjudged: why}
	}
	if len(fs) == 0 {
		return Verdict{Class: ClassHealthy, Exit: ExitHealthy, Finding: -1}
	}
	return Verdict{Class: fs[0].Class, Exit: fs[0].Exit, Finding: 0}
}

// stateOf is the snapshot's last state of a locker's process, as a fact: what it was doing.
func (m *model) stateOf(id int64) (InState, bool) {
	var st *ProcState
	for i := range m.states {
		if m.states[i].Locker == id {
			st = &m.states[i]
		}
	}
	if st == nil {
		return InState{}, false
	}
	return InState{State: st.State, Wchan: st.Wchan, Inflight: st.Inflight, Stack: strings.Join(st.Stack, " < ")}, true
}

// stateAt is the instant of the snapshot's last state of a locker's process.
func (m *model) stateAt(id int64) int64 {
	var at int64
	for _, st := range m.states {
		if st.Locker == id {
			at = st.At
		}
	}
	return at
}
