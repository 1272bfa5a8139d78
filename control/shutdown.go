package control

import (
	"fmt"
	"sort"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

// snapshot collects, at the end of the run, what every locker still running is doing (asked
// over the wire, read from /proc when it does not answer) and the /proc/locks lines of the
// run's files, as the events of one lockprobe.snapshot span.
type snapshot struct {
	at     time.Time
	events []*tracepb.Span_Event
}

func (r *run) snapshotReply(m *member, s *proto.Snapshot) {
	if r.snap == nil || m.snapshotDone {
		return
	}
	m.snapshotDone = true
	// A locker halts before it answers: whatever it began, it began before s.At. The run's end
	// moves past the halts, so that nothing a locker did lies after it.
	if s.At > r.endAt.UnixNano() && m.role == roleLocker {
		r.endAt = time.Unix(0, s.At)
	}
	r.snap.events = append(r.snap.events, stateEvent(m, s.At, s.PID, s.TID, s.State, s.Wchan, s.Stack, s.Inflight, "locker"))
}

func stateEvent(m *member, at int64, pid, tid int, state, wchan string, stack []string, inflight, source string) *tracepb.Span_Event {
	if stack == nil {
		stack = []string{}
	}
	return &tracepb.Span_Event{TimeUnixNano: uint64(at), Name: semconv.EventState, Attributes: []*commonpb.KeyValue{
		num(semconv.LockerID, int64(m.id)), str(semconv.LockerRole, m.role.String()), str(semconv.Node, m.node),
		num(semconv.ProcessPID, int64(pid)), num(semconv.ProcTID, int64(tid)),
		str(semconv.ProcState, state), str(semconv.ProcWchan, wchan), strs(semconv.ProcStack, stack),
		str(semconv.ProcInfl, inflight), str("lockprobe.snapshot.source", source),
	}}
}

// snapshotWait is how long the members have to answer the snapshot request once the controller
// has taken in everything that reached it: the answers queue behind what the members sent
// before them, and a thousand lockers' last records on two cores took seconds to take in, so
// that a fixed second after the request named every one of them unresponsive (they had all
// answered; the answers were still in the queue). snapshotWaitMax bounds the wait whatever the
// input.
const (
	snapshotWait    = time.Second
	snapshotWaitMax = 30 * time.Second
)

// takeSnapshot asks the members still running for their state, waits for their answers
// (snapshotWait), and reads /proc for those that did not answer: a locker stuck in a file
// system call still has a reader goroutine, but a process in D state or a stopped client may
// answer nothing. The request also tells each locker that the run is over: it starts no
// further command.
func (r *run) takeSnapshot() {
	r.snap = &snapshot{at: time.Now()}
	awaited := map[*member]bool{}
	for _, m := range r.members {
		if m.connected() {
			r.send(m, &proto.Message{Kind: proto.KindSnapReq, SnapReq: &proto.SnapReq{Reason: r.res.EndReason, At: r.endAt.UnixNano()}})
			awaited[m] = true
		}
	}
	deadline := time.NewTimer(snapshotWait)
	defer deadline.Stop()
	longest := time.NewTimer(snapshotWaitMax)
	defer longest.Stop()
	for len(awaited) > 0 {
		select {
		case in, ok := <-r.in:
			if r.receive(in, ok) && in.Msg != nil && in.Msg.Kind == proto.KindSnapshot {
				delete(awaited, r.byIdent[in.From])
			}
		case note := <-r.exits:
			r.exited(note)
			delete(awaited, note.m)
		case <-deadline.C:
			if !r.drained() {
				// Messages wait between the socket and the loop: the answers may be among them.
				deadline.Reset(snapshotWait / 10)
				continue
			}
			clear(awaited)
		case <-longest.C:
			clear(awaited)
		}
	}
	for _, m := range r.members {
		if m.connected() && !m.snapshotDone {
			r.res.Unresponsive = append(r.res.Unresponsive, fmt.Sprintf("%s (pid %d on %s)", m.label(), m.pid, m.node))
			if !m.remote {
				r.snap.events = append(r.snap.events, r.procState(m))
			}
		}
	}
	r.snap.events = append(r.snap.events, r.procLocks()...)
	r.snap.events = append(r.snap.events, r.glusterEvents()...)
	r.snap.events = append(r.snap.events, r.simfsEvents()...)
	sort.SliceStable(r.snap.events, func(i, j int) bool { return r.snap.events[i].TimeUnixNano < r.snap.events[j].TimeUnixNano })
	span := &tracepb.Span{TraceId: r.traceID[:], SpanId: newSpanID(), ParentSpanId: r.rootID[:], Name: semconv.SpanSnapshot,
		StartTimeUnixNano: uint64(r.snap.at.UnixNano()), EndTimeUnixNano: uint64(time.Now().UnixNano()), Events: r.snap.events,
		Attributes: []*commonpb.KeyValue{str(semconv.RunEndReason, r.res.EndReason)}}
	r.writeRecord(resourceSpans(controllerResource(r.opts.Version), span))
}

// procState reads an unresponsive member's state from /proc: the thread blocked in the lock
// code if there is one, else the main thread.
func (r *run) procState(m *member) *tracepb.Span_Event {
	now := time.Now().UnixNano()
	threads, err := host.ReadThreads(m.pid)
	if err != nil || len(threads) == 0 {
		return stateEvent(m, now, m.pid, 0, "?", "", nil, "", "proc: "+fmt.Sprint(err))
	}
	pick := host.WaitingThread(threads)
	return stateEvent(m, now, m.pid, pick.TID, pick.State, pick.Wchan, pick.Stack, "", "proc (no answer)")
}

// procLocks returns the /proc/locks lines of the run's files as events.
func (r *run) procLocks() []*tracepb.Span_Event {
	entries, err := host.ReadLocks()
	if err != nil {
		return nil
	}
	now := uint64(time.Now().UnixNano())
	seen := map[host.FileID]bool{}
	var out []*tracepb.Span_Event
	for _, ff := range r.files {
		id, f := ff.id, ff.path
		if ff.idErr != nil || seen[id] {
			continue
		}
		seen[id] = true
		lines := host.FilterFile(entries, id)
		byLine := map[int]host.LockEntry{}
		for _, e := range lines {
			byLine[e.Line] = e
		}
		for _, e := range lines {
			blocker := int64(0)
			if e.Waiter {
				blocker = int64(e.ParentLine)
			}
			out = append(out, &tracepb.Span_Event{TimeUnixNano: now, Name: semconv.EventProcLock, Attributes: []*commonpb.KeyValue{
				num(semconv.ProcLockID, int64(e.Line)), num(semconv.ProcLockBy, blocker),
				str(semconv.ProcLockCl, e.Class), str(semconv.ProcLockRW, e.Mode), num(semconv.ProcLockPI, int64(e.PID)),
				num(semconv.ProcLockSt, e.Start), num(semconv.ProcLockEn, e.End), str(semconv.ProcLockRa, e.Raw),
				str(semconv.FilePath, f), str(semconv.FileLogical, "{file}"),
			}})
		}
	}
	return out
}

// shutdown ends the run for every member: snapshot, stop, wait for goodbyes, kill what is left.
// It never waits without a deadline.
func (r *run) shutdown(reason string) {
	r.res.EndReason = reason
	if reason != "start-failed" && reason != "done" {
		r.takeSnapshot()
	}
	for _, m := range r.members {
		if m.connected() {
			r.send(m, &proto.Message{Kind: proto.KindStop, Stop: &proto.Stop{Reason: reason, At: r.endAt.UnixNano()}})
		}
	}
	if !r.await(r.graceAfterHeal()) {
		// What has ended is not killed; what it sent is taken before its end is judged.
		r.drainFor(exitSettle)
		r.settleExits(true)
		r.stopGroup(false)
		r.killAll()
		return
	}
	r.drain()
	r.stopGroup(true)
}

// await handles messages and exits until every member is gone, or for at most d; it says
// whether they are all gone.
func (r *run) await(d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !r.allGone() {
		var settle <-chan time.Time // exits waiting for their member's last messages
		if len(r.settling) > 0 {
			settle = time.After(20 * time.Millisecond)
		}
		select {
		case in, ok := <-r.in:
			r.receive(in, ok)
		case note := <-r.exits:
			r.exited(note)
		case <-r.groupDone:
			_ = r.groupExited()
		case <-settle:
			r.settleExits(false)
		case <-deadline.C:
			return false
		}
	}
	return true
}

// killWait is how long the run waits for killed members to be reaped: a process whose thread
// waits on a stopped FUSE server may not die until the server runs again.
const killWait = 2 * time.Second

// killAll kills the members that did not stop in time and waits (bounded) for them to go.
func (r *run) killAll() {
	killed := 0
	for _, m := range r.members {
		if !m.gone() && m.proc != nil {
			killed++
			r.res.Killed = append(r.res.Killed, fmt.Sprintf("%s (pid %d)", m.label(), m.pid))
			if err := m.proc.Kill(); err != nil {
				r.opts.Log.Warn("kill", "member", m.label(), "pid", m.pid, "err", err)
			}
		}
	}
	if killed > 0 && !r.await(killWait) {
		for _, m := range r.members {
			if !m.gone() && m.proc != nil {
				r.res.Unresponsive = append(r.res.Unresponsive, fmt.Sprintf("%s (pid %d): still alive %s after SIGKILL", m.label(), m.pid, killWait))
			}
		}
		r.opts.Log.Error("members still running after SIGKILL (uninterruptible sleep?)")
		return
	}
	r.drain()
}

// drain takes the messages that are still queued after every member has gone.
func (r *run) drain() { r.drainFor(drainMax) }

// drainMax bounds drain: members that are gone send nothing more, but a member the run could
// not kill may.
const drainMax = 30 * time.Second

// drainFor takes queued messages until none has come for 50 ms, or for at most d.
func (r *run) drainFor(d time.Duration) {
	idle := time.NewTimer(50 * time.Millisecond)
	defer idle.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for r.in != nil {
		select {
		case in, ok := <-r.in:
			r.receive(in, ok)
			idle.Reset(50 * time.Millisecond)
		case <-idle.C:
			return
		case <-deadline.C:
			return
		}
	}
}
