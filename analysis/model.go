package analysis

import (
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
	"strconv"
)

// Locker is one process of the run: a locker, an observer or the controller.
type Locker struct {
	ID   int64
	Role string
	Node string
	Host string
	PID  int64
	TID  int64 // the thread that makes the lock calls, 0 when unknown
	// Command is the command line of a process of a real program (Role "program": traced by
	// exec or seen by watch), which reports name by pid and command line.
	Command string
	SpanID  string
	Begin   int64
	End     int64
	Facts   map[string]string
	// Offset is the clock offset the locker stamps with (controller − locker, measured at its
	// start); Uncertainty bounds how far its stamps may be off the controller's clock: that
	// measurement's bound, widened by the drift each re-measurement showed (its distance from
	// Offset plus its own bound).
	Offset      int64
	Uncertainty int64
	Exited      bool
	ExitAt      int64
	ExitStatus  string
	ExitSignal  string
	// Goodbye says it ended after saying goodbye (it had sent everything); Unsent is how many
	// records it still had queued when it ended without (at least; from its last message).
	Goodbye bool
	Unsent  int64
	// lastSeen is the latest instant of a record the locker made itself: it was alive then.
	lastSeen int64
}

// Owner is what F_GETLK (or the observer, or /proc/locks) named as the holder of a lock.
type Owner struct {
	PID    int64
	Start  int64
	Len    int64
	Locker int64  // -1 when it maps to no locker
	Source string // getlk | proc-locks | fdinfo | none
	Node   string // the owner's node when known
	// The small fields together: an attempt may hold thousands of conflicts.
	Mode  semconv.Mode
	Class semconv.OwnerClass
	// Remote says the pid is no process of the node that answered: its holder runs on another
	// node (a distributed file system names it by its pid there).
	Remote bool
}

// Conflict is one change of a waiter's own F_GETLK answer.
type Conflict struct {
	At    int64
	Owner Owner
}

// Attempt is one request for a lock.
type Attempt struct {
	ID     string
	Locker int64
	lockmodel.Request
	Style   semconv.Style
	Outcome semconv.Outcome
	// Waited says the attempt had to wait: a conflicting hold of another locker was open when it
	// began or went first during its wait, or it recorded a conflict or a failed try, or it did
	// not end granted (the rule of Stats.Waits, model.waited). Set by Finalize. (Beside the
	// other small fields: 10^6 attempts are a block.)
	Waited    bool
	Errno     string
	Tries     int64
	FD        int64
	File      string // file.logical
	Path      string
	Begin     int64
	End       int64 // 0 while it is still open
	Scheduled int64
	CmdLine   int64
	CmdText   string
	CmdIndex  int64
	Conflicts []Conflict
	TryTimes  []int64
	idx       int // position in the model's sorted attempts
}

// Hold is a lock held from its grant to its release.
type Hold struct {
	ID     string
	Locker int64
	lockmodel.Request
	FD        int64
	File      string
	Path      string
	Begin     int64
	End       int64 // 0 while it is still open
	How       semconv.HoldEnd
	AcquireID string
	ClosedFD  int64 // -1 when not ended by close
	// Rechecks counts the granted calls that took the held lock again unchanged (a real
	// program's, recorded by exec: casacore re-checks its lock on every table access).
	Rechecks int64
}

// Observation is one change of an observer's F_GETLK answer over the whole file.
type Observation struct {
	At        int64
	Observer  int64
	Node      string
	QueryMode string
	File      string
	Owner     Owner
}

// Getlk is one explicit F_GETLK query of a scenario.
type Getlk struct {
	ID     string
	Locker int64
	At     int64
	Mode   semconv.Mode
	Start  int64
	Len    int64
	File   string
	Owner  Owner
}

// ProcState is one locker's process state in the end-of-run snapshot.
type ProcState struct {
	At       int64
	Locker   int64
	PID      int64
	TID      int64
	State    string
	Wchan    string
	Stack    []string
	Inflight string
}

// ProcLock is one /proc/locks line of the run's file in the snapshot.
type ProcLock struct {
	At      int64
	ID      int64
	Blocker int64  // id of the line it waits behind, 0 if it holds
	Class   string // POSIX | OFDLCK | FLOCK
	Mode    string // READ | WRITE
	PID     int64
	Locker  int64 // the locker the owner rule names by PID on Node; -1 for none
	Start   int64
	End     int64 // -1 = EOF
	Raw     string
	File    string
	Node    string
}

// Run holds what the root span says about the run.
type Run struct {
	TraceID      string
	Command      string
	Scenario     string
	ScenarioText string
	Procs        int64
	TimeoutNS    int64
	PollNS       int64
	StartNS      int64
	Begin        int64
	End          int64
	EndReason    string
	MessagesLost int64
	Node         string
	Host         string
	// Launcher, Delivery and Nodes describe a run across the nodes of a cluster: how the lockers
	// were started, how the binary reached the nodes, and the nodes in order (empty: a local run).
	Launcher string
	Delivery string
	Nodes    []string
	// Killed names the processes of a real program that lockprobe killed at the run's end
	// (exec at its -timeout): their attempts still blocked then end `blocked` at the end instant.
	Killed []string
}

// request is the lock an owner holds, as a request of kind: F_GETLK's answer has no kind of its
// own, it is the kind of the request that asked.
func (o Owner) request(kind semconv.Kind) lockmodel.Request {
	return lockmodel.Request{Kind: kind, Mode: o.Mode, Start: o.Start, Len: o.Len}
}

func ownerOf(a tracefile.Attrs) Owner {
	o := Owner{
		PID:    a.IntOr(semconv.LockOwnerPID, 0),
		Mode:   value(semconv.ParseMode, a.Str(semconv.LockOwnerMode)),
		Start:  a.IntOr(semconv.LockOwnerStart, 0),
		Len:    a.IntOr(semconv.LockOwnerLen, 0),
		Locker: a.IntOr(semconv.LockOwnerLockerID, -1),
		Source: a.Str(semconv.LockOwnerSource),
		Node:   a.Str(semconv.Node),
		Remote: a.IntOr(semconv.LockOwnerLocal, 1) == 0,
	}
	switch cls := a.Str(semconv.LockOwnerClass); {
	case cls != "":
		o.Class = value(semconv.ParseOwnerClass, cls)
	case o.Mode == semconv.ModeNone:
		o.Class = semconv.OwnerNone
	case o.Locker >= 0:
		o.Class = semconv.OwnerLocker
	default:
		o.Class = semconv.OwnerUnknown
	}
	return o
}

// value reads a value of a closed set from a trace: a name this version does not know reads as
// the set's zero value (Validate reports it).
func value[T any](parse func(string) (T, error), s string) T {
	v, _ := parse(s)
	return v
}

// attr returns the span attribute, or the resource attribute of the same key.
func attrStr(s *tracefile.Span, key string) string {
	if v := s.Attrs.Str(key); v != "" {
		return v
	}
	return s.Resource.Str(key)
}

func attrInt(s *tracefile.Span, key string, def int64) int64 {
	if v, ok := s.Attrs.Int(key); ok {
		return v
	}
	return s.Resource.IntOr(key, def)
}

// lockAttrs are the attributes attempts and holds share: who, which lock, which file.
type lockAttrs struct {
	locker     int64
	haveLocker bool
	req        lockmodel.Request
	file, path string
	fd         int64
}

// set takes one shared attribute and says whether k was one.
func (l *lockAttrs) set(k string, v any) bool {
	switch k {
	case semconv.LockerID:
		l.locker, l.haveLocker = intOf(v, -1), true
	case semconv.LockKind:
		l.req.Kind = value(semconv.ParseKind, strOf(v))
	case semconv.LockMode:
		l.req.Mode = value(semconv.ParseMode, strOf(v))
	case semconv.LockStart:
		l.req.Start = intOf(v, 0)
	case semconv.LockLen:
		l.req.Len = intOf(v, 0)
	case semconv.LockFD:
		l.fd = intOf(v, 0)
	case semconv.FileLogical:
		l.file = strOf(v)
	case semconv.FilePath:
		l.path = strOf(v)
	default:
		return false
	}
	return true
}

// finish fills what a span may leave out: the locker from the resource, the logical file from
// the path.
func (l *lockAttrs) finish(s *tracefile.Span) {
	if !l.haveLocker {
		l.locker = s.Resource.IntOr(semconv.LockerID, -1)
	}
	if l.file == "" {
		l.file = l.path
	}
}

// attemptOf reads an attempt span in one pass over its attributes: on a trace of 10^6 events, a
// map lookup per field costs more than the rest of the analysis.
func attemptOf(s *tracefile.Span) Attempt {
	a := Attempt{ID: s.SpanID, Begin: s.Start, End: s.End, Outcome: semconv.OutcomeWaiting,
		Style: semconv.StyleWait, Conflicts: []Conflict{}, TryTimes: []int64{}}
	var l lockAttrs
	for _, kv := range s.Attrs {
		k, v := kv.Key, kv.Value
		if l.set(k, v) {
			continue
		}
		switch k {
		case semconv.LockStyle:
			if st := value(semconv.ParseStyle, strOf(v)); st != semconv.StyleUnset {
				a.Style = st
			}
		case semconv.LockOutcome:
			a.Outcome = value(semconv.ParseOutcome, strOf(v))
		case semconv.LockErrno:
			a.Errno = strOf(v)
		case semconv.LockTries:
			a.Tries = intOf(v, 0)
		case semconv.LockScheduled:
			a.Scheduled = intOf(v, 0)
		case semconv.LockCmdLine:
			a.CmdLine = intOf(v, 0)
		case semconv.LockCmdText:
			a.CmdText = strOf(v)
		case semconv.LockCmdIndex:
			a.CmdIndex = intOf(v, 0)
		}
	}
	l.finish(s)
	a.Locker, a.Request, a.FD, a.File, a.Path = l.locker, l.req, l.fd, l.file, l.path
	for _, e := range s.Events {
		switch e.Name {
		case semconv.EventConflict:
			a.Conflicts = append(a.Conflicts, Conflict{At: e.Time, Owner: ownerOf(e.Attrs)})
		case semconv.EventTry:
			a.TryTimes = append(a.TryTimes, e.Time)
		}
	}
	return a
}

func holdOf(s *tracefile.Span) Hold {
	h := Hold{ID: s.SpanID, Begin: s.Start, End: s.End, How: semconv.HoldOpen, ClosedFD: -1}
	var l lockAttrs
	for _, kv := range s.Attrs {
		k, v := kv.Key, kv.Value
		if l.set(k, v) {
			continue
		}
		switch k {
		case semconv.LockHoldEnd:
			h.How = value(semconv.ParseHoldEnd, strOf(v))
		case semconv.LockAcquireID:
			h.AcquireID = strOf(v)
		case semconv.LockClosedFD:
			h.ClosedFD = intOf(v, -1)
		case semconv.LockRechecks:
			h.Rechecks = intOf(v, 0)
		}
	}
	l.finish(s)
	h.Locker, h.Request, h.FD, h.File, h.Path = l.locker, l.req, l.fd, l.file, l.path
	return h
}

func strOf(v any) string {
	s, _ := v.(string)
	return s
}

func intOf(v any, def int64) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	}
	return def
}

func getlkOf(s *tracefile.Span) *Getlk {
	g := &Getlk{
		ID:     s.SpanID,
		Locker: attrInt(s, semconv.LockerID, -1),
		At:     s.Start,
		Mode:   value(semconv.ParseMode, s.Attrs.Str(semconv.LockMode)),
		Start:  s.Attrs.IntOr(semconv.LockStart, 0),
		Len:    s.Attrs.IntOr(semconv.LockLen, 0),
		File:   s.Attrs.Str(semconv.FileLogical),
		Owner:  ownerOf(s.Attrs),
	}
	if g.File == "" {
		g.File = s.Attrs.Str(semconv.FilePath)
	}
	return g
}

// processOf builds a Locker from a lockprobe.locker or lockprobe.observer span.
func processOf(s *tracefile.Span) *Locker {
	l := &Locker{
		ID:      attrInt(s, semconv.LockerID, -1),
		Role:    attrStr(s, semconv.LockerRole),
		Node:    attrStr(s, semconv.Node),
		Host:    attrStr(s, semconv.HostName),
		PID:     attrInt(s, semconv.ProcessPID, 0),
		TID:     attrInt(s, semconv.ProcTID, 0),
		Command: attrStr(s, semconv.ProcCommandLine),
		SpanID:  s.SpanID,
		Begin:   s.Start,
		End:     s.End,
		Facts:   map[string]string{},
	}
	if l.Role == "" {
		l.Role = "locker"
		if s.Name == semconv.SpanObserver {
			l.Role = "observer"
		}
	}
	if l.Node == "" {
		l.Node = l.Host
	}
	for _, k := range factKeys {
		if v := factOf(s, k); v != "" {
			l.Facts[k] = v
		}
	}
	// The offset it stamps with is on its span; a trace without it has the start-up measurement
	// as the first clock event.
	stamped := false
	if off, ok := s.Attrs.Int(semconv.ClockOffset); ok {
		l.Offset, l.Uncertainty, stamped = off, attrInt(s, semconv.ClockUncertainty, 0), true
	}
	for _, e := range s.Events {
		switch e.Name {
		case semconv.EventClock:
			off := e.Attrs.IntOr(semconv.ClockOffset, 0)
			if !stamped {
				l.Offset, stamped = off, true
			}
			l.Uncertainty = max(l.Uncertainty, e.Attrs.IntOr(semconv.ClockUncertainty, 0)+abs(off-l.Offset))
		case semconv.EventExit:
			l.Exited = true
			l.ExitAt = e.Time
			l.ExitStatus = e.Attrs.Str(semconv.ExitStatus)
			l.ExitSignal = e.Attrs.Str(semconv.ExitSignal)
			// A trace of a controller that did not say leaves it unknown: count it as said.
			v, _ := e.Attrs.Get(semconv.ExitGoodbye)
			bye, ok := v.(bool)
			l.Goodbye = bye || !ok
			l.Unsent = e.Attrs.IntOr(semconv.ExitUnsent, 0)
		}
	}
	return l
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// factKeys are the host facts copied from a process's resource.
var factKeys = []string{
	semconv.HostName, semconv.OSKernel, semconv.FSType, semconv.FSMountType, semconv.FSMountPoint,
	semconv.FSMountSource, semconv.FSMountOpts, semconv.FSLockOpts, semconv.LustreVersion,
	semconv.ToolVersion,
}

// factOf renders a resource attribute as text; lists are joined with commas.
func factOf(s *tracefile.Span, key string) string {
	v, ok := s.Resource.Get(key)
	if !ok {
		v, ok = s.Attrs.Get(key)
	}
	if !ok {
		return ""
	}
	switch x := v.(type) {
	case string:
		return x
	case []any:
		out := ""
		for i, e := range x {
			if i > 0 {
				out += ","
			}
			if str, ok := e.(string); ok {
				out += str
			}
		}
		return out
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

func runOf(s *tracefile.Span) *Run {
	return &Run{
		TraceID:      s.TraceID,
		Command:      s.Attrs.Str(semconv.RunCommand),
		Scenario:     s.Attrs.Str(semconv.RunScenario),
		ScenarioText: s.Attrs.Str(semconv.RunScenarioTx),
		Procs:        s.Attrs.IntOr(semconv.RunProcs, 0),
		TimeoutNS:    s.Attrs.IntOr(semconv.RunTimeout, 0),
		PollNS:       s.Attrs.IntOr(semconv.RunPoll, 0),
		StartNS:      s.Attrs.IntOr(semconv.RunStartNS, 0),
		Begin:        s.Start,
		End:          s.End,
		EndReason:    s.Attrs.Str(semconv.RunEndReason),
		MessagesLost: s.Attrs.IntOr(semconv.RunLost, 0),
		Node:         attrStr(s, semconv.Node),
		Host:         attrStr(s, semconv.HostName),
		Launcher:     s.Attrs.Str(semconv.RunLauncher),
		Delivery:     s.Attrs.Str(semconv.RunDelivery),
		Nodes:        s.Attrs.Strings(semconv.RunNodes),
		Killed:       s.Attrs.Strings(semconv.RunKilled),
	}
}

// snapshotOf reads the snapshot span's events.
func snapshotOf(s *tracefile.Span) ([]ProcState, []ProcLock) {
	states := []ProcState{}
	locks := []ProcLock{}
	node := attrStr(s, semconv.Node)
	if node == "" {
		node = attrStr(s, semconv.HostName)
	}
	for _, e := range s.Events {
		switch e.Name {
		case semconv.EventState:
			st := e.Attrs.Strings(semconv.ProcStack)
			states = append(states, ProcState{
				At:       e.Time,
				Locker:   e.Attrs.IntOr(semconv.LockerID, -1),
				PID:      e.Attrs.IntOr(semconv.ProcessPID, 0),
				TID:      e.Attrs.IntOr(semconv.ProcTID, 0),
				State:    e.Attrs.Str(semconv.ProcState),
				Wchan:    e.Attrs.Str(semconv.ProcWchan),
				Stack:    st,
				Inflight: e.Attrs.Str(semconv.ProcInfl),
			})
		case semconv.EventProcLock:
			locks = append(locks, ProcLock{
				At:      e.Time,
				ID:      e.Attrs.IntOr(semconv.ProcLockID, 0),
				Blocker: e.Attrs.IntOr(semconv.ProcLockBy, 0),
				Class:   e.Attrs.Str(semconv.ProcLockCl),
				Mode:    e.Attrs.Str(semconv.ProcLockRW),
				PID:     e.Attrs.IntOr(semconv.ProcLockPI, 0),
				Locker:  -1,
				Start:   e.Attrs.IntOr(semconv.ProcLockSt, 0),
				End:     e.Attrs.IntOr(semconv.ProcLockEn, -1),
				Raw:     e.Attrs.Str(semconv.ProcLockRa),
				File:    e.Attrs.Str(semconv.FileLogical),
				Node:    node,
			})
		}
	}
	return states, locks
}

func observationsOf(s *tracefile.Span, id int64, node string) []Observation {
	out := make([]Observation, 0, len(s.Events))
	for _, e := range s.Events {
		if e.Name != semconv.EventObserved {
			continue
		}
		out = append(out, Observation{
			At:        e.Time,
			Observer:  id,
			Node:      node,
			QueryMode: e.Attrs.Str(semconv.QueryMode),
			File:      e.Attrs.Str(semconv.FileLogical),
			Owner:     ownerOf(e.Attrs),
		})
	}
	return out
}

// RoleProgram is the role of a process of a real program that lockprobe traced or watched.
const RoleProgram = "program"

// isProgram reports whether the locker is a process of a real program.
func (l *Locker) isProgram() bool { return l.Role == RoleProgram }
