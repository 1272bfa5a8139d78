package analysis

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/lockprobe/lockprobe/semconv"
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
)

// Exit statuses of a verdict (DESIGN.md).
const (
	ExitHealthy   = 0
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

// Evidence is one fact a finding rests on.
type Evidence struct {
	At     int64  `json:"at_ns"`
	Source string `json:"source"` // getlk | observer | proc-locks | trace | snapshot | errno
	By     string `json:"by"`     // who saw it: "locker 3", "observer on c07", "controller"
	Text   string `json:"text"`
}

// Finding is one detected signature.
type Finding struct {
	Class       string       `json:"class"`
	Exit        int          `json:"exit"`
	Summary     string       `json:"summary"`
	Lockers     []int64      `json:"lockers"`
	Attempts    []string     `json:"attempts"`
	Cycle       []int64      `json:"cycle"` // graph node ids of the cycle, for deadlocks
	Evidence    []Evidence   `json:"evidence"`
	FormedAt    int64        `json:"formed_ns"`   // when the condition began
	DetectedAt  int64        `json:"detected_ns"` // the instant of the check that found it
	Duration    int64        `json:"duration_ns"` // how long the condition lasted (to the check or its end)
	Resolved    bool         `json:"resolved"`    // the condition ended before the run did
	File        string       `json:"file"`
	Mode        semconv.Mode `json:"mode"`
	Kind        semconv.Kind `json:"kind"`
	Start       int64        `json:"start"`
	Len         int64        `json:"len"`
	Range       string       `json:"range"`
	Uncertainty int64        `json:"clock_uncertainty_ns"` // the clock bound the conclusion rests on
	// Cause says, when the evidence shows it, that the finding follows from configuration
	// rather than a bug (CauseMountOption); "" otherwise.
	Cause string `json:"cause"`
}

// CauseMountOption: the file system does what its mount options ask (Lustre -o localflock:
// no exclusion across nodes).
const CauseMountOption = "mount-option"

// Verdict is the run's conclusion: the most severe finding, or healthy.
type Verdict struct {
	Class   string `json:"class"`
	Exit    int    `json:"exit"`
	Summary string `json:"summary"`
	Finding int    `json:"finding"` // index into Result.Findings, -1 when healthy
}

// Result is everything the analysis found, ready for the reports.
type Result struct {
	Verdict      Verdict         `json:"verdict"`
	Findings     []Finding       `json:"findings"`
	Run          Run             `json:"run"`
	Start        int64           `json:"start_ns"`
	End          int64           `json:"end_ns"`
	Truncated    bool            `json:"truncated"`
	MessagesLost int64           `json:"messages_lost"`
	StuckAfter   int64           `json:"stuck_after_ns"`
	Lockers      []Locker        `json:"lockers"`
	Observers    []Locker        `json:"observers"`
	Summaries    []LockerSummary `json:"locker_summaries"`
	Hosts        []HostFacts     `json:"hosts"`
	Attempts     []Attempt       `json:"attempts"`
	Holds        []Hold          `json:"holds"`
	Observations []Observation   `json:"observations"`
	Getlks       []Getlk         `json:"getlks"`
	States       []ProcState     `json:"states"`
	ProcLocks    []ProcLock      `json:"proc_locks"`
	Graph        *WaitGraph      `json:"graph"` // the wait-for graph at the verdict's instant
	Stats        Stats           `json:"stats"`
	// Semantics is how the file system arbitrates locks, read from the lockers' facts: it
	// decides which requests conflict.
	Semantics Semantics `json:"semantics"`
}

// newFinding fills in the derived fields of a finding.
func newFinding(class string, f Finding) Finding {
	f.Class = class
	f.Exit = classExit[class]
	if f.Range == "" && f.File != "" {
		f.Range = rangeText(f.Start, f.Len)
	}
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
func verdictOf(fs []Finding) Verdict {
	if len(fs) == 0 {
		return Verdict{Class: ClassHealthy, Exit: ExitHealthy, Finding: -1,
			Summary: "healthy: every lock attempt ended and no signature of a file-system locking bug was found"}
	}
	return Verdict{Class: fs[0].Class, Exit: fs[0].Exit, Summary: fs[0].Summary, Finding: 0}
}

// rangeText renders a byte range as "[start, end)", "EOF" for a length of 0.
func rangeText(start, length int64) string {
	if length <= 0 {
		return "[" + itoa(start) + ", EOF)"
	}
	return "[" + itoa(start) + ", " + itoa(start+length) + ")"
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// secs renders a duration in ns as seconds with one decimal ("28.4 s"), or ms when short.
func secs(ns int64) string {
	if ns < 0 {
		ns = 0
	}
	if ns < 1e9 {
		return strconv.FormatFloat(float64(ns)/1e6, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(float64(ns)/1e9, 'f', 1, 64) + " s"
}

// who names a locker as a report says it: "locker 3 (pid 4711 on node c12)".
// A process of a real program has no locker id a user knows: it is named by pid and command
// line, "pid 4711 (python3 race.py T) on node c12".
func (m *model) who(id int64) string {
	l := m.locker(id)
	node := l.Node
	if node == "" {
		node = "?"
	}
	if l.isProgram() {
		return fmt.Sprintf("pid %d (%s) on node %s", l.PID, short(l.Command), node)
	}
	return fmt.Sprintf("locker %d (pid %d on node %s)", id, l.PID, node)
}

// by names who saw a piece of evidence: "locker 3", or "pid 4711" for a program's process.
func (m *model) by(id int64) string {
	if l := m.locker(id); l.isProgram() {
		return fmt.Sprintf("pid %d", l.PID)
	}
	return fmt.Sprintf("locker %d", id)
}

// members names a set of lockers: "lockers 1, 2", or "processes 4711, 4712" for a program's.
func (m *model) members(ids []int64) string {
	var pids []int64
	for _, id := range ids {
		if l := m.locker(id); l.isProgram() {
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

// ownerText says what an F_GETLK answer named.
func (m *model) ownerText(o Owner) string {
	switch o.Class {
	case semconv.OwnerNone:
		return "no conflicting lock"
	case semconv.OwnerSelf:
		return fmt.Sprintf("the waiter itself (pid %d) holding a %s lock on %s", o.PID, o.Mode, rangeText(o.Start, o.Len))
	case semconv.OwnerLocker:
		return fmt.Sprintf("%s holding a %s lock on %s", m.who(o.Locker), o.Mode, rangeText(o.Start, o.Len))
	}
	node := o.Node
	if node == "" {
		node = "?"
	}
	return fmt.Sprintf("a %s owner (pid %d on node %s) holding a %s lock on %s", o.Class, o.PID, node, o.Mode, rangeText(o.Start, o.Len))
}

// attemptText describes a request: "a write lock on [0, EOF) of {file}".
func attemptText(a *Attempt) string {
	article := "a"
	if a.Kind == semconv.KindOFD {
		article = "an"
	}
	return fmt.Sprintf("%s %s %s lock on %s of %s", article, a.Kind, a.Mode, rangeText(a.Start, a.Len), a.File)
}

func joinIDs(ids []int64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = itoa(id)
	}
	return strings.Join(parts, ", ")
}

// doing says what a process does, from the end-of-run snapshot: "sleeping (S) in
// hrtimer_nanosleep, in no lock call", with the snapshot as evidence.
func (m *model) doing(id int64) (string, []Evidence) {
	var st *ProcState
	for i := range m.states {
		if m.states[i].Locker == id {
			st = &m.states[i]
		}
	}
	if st == nil {
		return "doing something no snapshot shows", nil
	}
	state := map[string]string{"R": "running", "S": "sleeping", "D": "in uninterruptible sleep", "T": "stopped",
		"t": "stopped by a tracer", "Z": "a zombie", "I": "idle"}[st.State]
	if state == "" {
		state = "in state " + st.State
	}
	text := state + " (" + st.State + ")"
	if st.Wchan != "" && st.Wchan != "0" {
		text += " in " + st.Wchan
	}
	if st.Inflight != "" {
		text += ", in " + st.Inflight
	} else {
		text += ", in no lock call"
	}
	ev := Evidence{At: st.At, Source: SourceSnapshot, By: m.by(id), Text: "process state: " + text}
	if len(st.Stack) > 0 {
		ev.Text += "; kernel stack " + strings.Join(st.Stack, " < ")
	}
	return text, []Evidence{ev}
}
