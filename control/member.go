package control

import (
	"fmt"
	"time"
)

// phase is where a member is in its life. A member only moves forward, one of the steps
// transitions allows; phaseExited can come from anywhere (a process may die at any moment).
type phase uint8

const (
	phasePlanned  phase = iota // named, not started (a remote one: not connected yet)
	phaseStarted               // its process was started here; no hello yet
	phaseWelcomed              // its hello was accepted; it measures its clock
	phaseReady                 // ready for its queue
	phaseRunning               // its queue was sent
	phaseIdle                  // its queue ran out
	phaseLeft                  // it said goodbye (its process may still be ending)
	phaseExited                // its process is gone (a remote one: goodbye or silence)
	phaseEnd
)

var phaseNames = [...]string{
	phasePlanned: "planned", phaseStarted: "started", phaseWelcomed: "welcomed", phaseReady: "ready",
	phaseRunning: "running", phaseIdle: "idle", phaseLeft: "left", phaseExited: "exited",
}

func (p phase) String() string {
	if p < phaseEnd {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// transitions lists, for each phase, the phases a member may move to next.
var transitions = [phaseEnd][]phase{
	phasePlanned:  {phaseStarted, phaseWelcomed},
	phaseStarted:  {phaseWelcomed},
	phaseWelcomed: {phaseReady, phaseLeft},
	phaseReady:    {phaseRunning, phaseLeft},
	phaseRunning:  {phaseIdle, phaseLeft},
	phaseIdle:     {phaseLeft},
	phaseLeft:     {},
	phaseExited:   {},
}

// to moves m to next and says whether that step was allowed; a message that does not fit the
// member's life (a ready before a welcome, an idle after a goodbye) changes nothing.
func (m *member) to(next phase) bool {
	if next == phaseExited {
		ok := m.phase != phaseExited
		m.phase = phaseExited
		return ok
	}
	for _, p := range transitions[m.phase] {
		if p == next {
			m.phase = next
			return true
		}
	}
	return false
}

// role is what a member does.
type role uint8

const (
	roleLocker role = iota
	roleObserver
)

func (r role) String() string {
	if r == roleObserver {
		return "observer"
	}
	return "locker"
}

// member is one locker or observer of the run, as the controller tracks it.
type member struct {
	id       int // locker id; observers are -1-k
	role     role
	node     string
	file     string
	remote   bool   // runs on another node: not started here, no process to wait for
	launched bool   // started on its node by Options.Launch: its end is the Group's
	identity string // DEALER identity, known from its hello
	pid      int
	tid      int // its lock thread, from its ready
	proc     Process
	phase    phase

	lastHeard  time.Time
	welcomedAt time.Time
	queue      delivery // its command queue
	exit       Exit

	exitPhase phase // its phase when it exited

	// undelivered counts the messages the controller could not queue for the member: its
	// outbox was full, it was not reading (wire.ErrNotReading).
	undelivered int

	lastSeq, received, lost uint64
	backlog                 uint32 // what its latest message said it still had queued
	lockerSpanID, traceID   string // hex ids of its lockprobe.locker (or observer) span
	snapshotDone            bool
}

// delivery tracks a message that is resent until acked.
type delivery struct {
	frame  []byte // the message, encoded once for every send
	sentAt time.Time
	sends  int // times it was queued for the member
	acked  bool
}

func (m *member) label() string {
	if m.role == roleObserver {
		return fmt.Sprintf("observer on %s", m.node)
	}
	return fmt.Sprintf("locker %d", m.id)
}

// saidBye says the member said goodbye: it had sent everything it recorded.
func (m *member) saidBye() bool {
	return m.phase == phaseLeft || m.phase == phaseExited && m.exitPhase == phaseLeft
}

// unsent is what a member that ended without its goodbye still had queued, as far as its last
// message told: records that never arrived.
func (m *member) unsent() uint64 {
	if m.phase == phaseExited && m.exitPhase < phaseLeft {
		return uint64(m.backlog)
	}
	return 0
}

// connected says the member has been welcomed and has not gone: messages reach it.
func (m *member) connected() bool { return m.phase >= phaseWelcomed && m.phase < phaseLeft }

// done says a locker has nothing more to do: its queue ran out, or it left or died.
func (m *member) done() bool { return m.phase >= phaseIdle }

// gone says nothing of the member runs any more: its process was reaped, or (no process here)
// it left, or it never connected.
func (m *member) gone() bool {
	switch {
	case m.phase == phaseExited:
		return true
	case m.remote:
		return m.phase == phaseLeft || m.phase == phasePlanned
	default:
		return m.proc == nil
	}
}
