package probe

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

// executor runs one locker's queue on a locked OS thread. mu guards the lock state (holds,
// in-flight attempt) against the stop and snapshot paths, which run on other goroutines while
// the executor may be blocked in a lock call; it is never held across a lock call.
type executor struct {
	l     *Locker
	queue []proto.Command
	start time.Time            // scenario start, controller clock
	peers *lockmodel.Processes // every node's lockers, for the owner rule
	// stop is closed (once, by halt) when the run is over for this locker: the controller's
	// snapshot request or stop, or its silence. No command starts after it.
	stop     chan struct{}
	stopOnce sync.Once
	haltAt   atomic.Int64 // when stop was closed, unix ns (controller clock)

	watcher *watcher // the conflict owner's poller of the executor's waits (watch)

	mu       sync.Mutex
	slots    [64]*slot
	holds    []*hold
	inflight *inflight
	executed int
	tid      int
	dead     bool // abandoned: spans were ended by the stop path
}

type inflight struct {
	span  *span
	begin int64 // the span's start, unix ns (controller clock)
	desc  string
	lock  *lockSource // when set, desc is made from it on demand: nothing avoidable before a lock call
}

func (in *inflight) text() string {
	if l := in.lock; l != nil && l.s != nil {
		c := l.cmd
		return fmt.Sprintf("%s %s lock on [%d, %s) of %s (%s, line %d)", l.kind, c.Mode, c.Start, endText(c.Start, c.Len), l.s.path, l.style, c.Line)
	}
	return in.desc
}

func unixTime(ns int64) time.Time { return time.Unix(0, ns) }

// run executes the queue and says why it ended: endStopCmd for a stop command, endStopped when
// told to stop, endQueueEmpty when the queue ran out.
func (e *executor) run() end {
	e.mu.Lock()
	e.tid = e.l.thread.tid
	e.mu.Unlock()
	var next *preparedLock // the next command's lock, prepared before this command ran
	for i := range e.queue {
		cmd := &e.queue[i]
		prep := next
		next = nil
		if cmd.Op == proto.OpLock && prep == nil && !cmd.HasAt {
			prep = e.prepareLock(i, cmd)
		}
		// A lock that follows is prepared now, before this command: after an unlock, the time
		// to the next lock call is what a waiter woken by the unlock races against (bare
		// programs relock within a microsecond), so nothing but the stamps may lie in it.
		// Only commands that open or close no descriptor leave the slots as they were. A lock
		// with an instant of its own is prepared before its wait instead: work done right
		// after this command, if it fired at an instant, would delay the lockers not yet fired.
		if i+1 < len(e.queue) && e.queue[i+1].Op == proto.OpLock && !e.queue[i+1].HasAt && cmd.Op != proto.OpFile && cmd.Op != proto.OpClose {
			next = e.prepareLock(i+1, &e.queue[i+1])
		}
		if cmd.HasAt {
			target := e.start.Add(cmd.After)
			if !cmd.Abs.IsZero() {
				target = cmd.Abs
			}
			local := e.l.clock.local(target)
			e.l.out.quiet(local)
			// A lock at an instant is prepared once the long wait is over, not right after the
			// command before it: that one may have fired at an instant too, with lockers of
			// that instant still to fire on this core.
			if !e.waitUntil(local, func() {
				if cmd.Op == proto.OpLock && prep == nil {
					prep = e.prepareLock(i, cmd)
				}
			}) {
				return endStopped
			}
		}
		if e.stopped() {
			return endStopped
		}
		stop := e.dispatch(i, cmd, prep)
		e.mu.Lock()
		e.executed++
		e.mu.Unlock()
		if stop {
			return endStopCmd
		}
	}
	return endQueueEmpty
}

// halt says no command may start any more; a lock call under way goes on until abandon.
func (e *executor) halt() {
	e.stopOnce.Do(func() {
		e.haltAt.Store(e.l.clock.now().UnixNano())
		close(e.stop)
	})
}

// haltedBy says whether the executor was halted at or before t: a lock stamped after the halt
// is not asked for, so that no attempt begins after the instant the snapshot reports.
func (e *executor) haltedBy(t time.Time) bool {
	at := e.haltAt.Load()
	return at != 0 && t.UnixNano() >= at
}

func (e *executor) stopped() bool {
	select {
	case <-e.stop:
		return true
	default:
		return false
	}
}

// waitUntil sleeps until local instant t, or returns false when stopped first. Long waits
// sleep on the stop channel; the last stretch is precise. ready runs before the last stretch.
func (e *executor) waitUntil(t time.Time, ready func()) bool {
	if d := time.Until(t) - 50*time.Millisecond; d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-e.stop:
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
	ready()
	sleepUntil(t, e.l.welcome.Spin)
	return true
}

// dispatch is the one place commands are interpreted.
func (e *executor) dispatch(index int, cmd *proto.Command, prep *preparedLock) (stop bool) {
	switch cmd.Op {
	case proto.OpFile:
		e.openFile(index, cmd)
	case proto.OpLock:
		e.lock(prep, cmd)
	case proto.OpRelease:
		e.release(index, cmd, false)
	case proto.OpReleaseIf:
		e.release(index, cmd, true)
	case proto.OpSleep:
		e.sleep(index, cmd)
	case proto.OpGetlk:
		e.getlk(index, cmd)
	case proto.OpClose:
		e.closeSlot(index, cmd)
	case proto.OpStop:
		e.mu.Lock()
		e.endAll(e.l.clock.now().UnixNano(), semconv.HoldExit)
		e.dead = true
		e.mu.Unlock()
		return true
	}
	return false
}

func (e *executor) kindOf(cmd *proto.Command) semconv.Kind {
	if cmd.Kind != semconv.KindUnset {
		return cmd.Kind
	}
	if e.l.welcome.Kind != semconv.KindUnset {
		return e.l.welcome.Kind
	}
	return lockmodel.DefaultKind
}

func (e *executor) styleOf(cmd *proto.Command) semconv.Style {
	if cmd.Style != semconv.StyleUnset {
		return cmd.Style
	}
	if e.l.welcome.Style != semconv.StyleUnset {
		return e.l.welcome.Style
	}
	return lockmodel.DefaultStyle
}

// cmdAttrs are the attributes every command's span has, with room for spare more.
func (e *executor) cmdAttrs(index int, cmd *proto.Command, spare int) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 6+spare)
	attrs = append(attrs,
		attribute.Int(semconv.LockerID, e.l.opts.ID),
		attribute.Int(semconv.LockCmdLine, cmd.Line),
		attribute.String(semconv.LockCmdText, cmd.Text),
		attribute.Int(semconv.LockFD, cmd.FD),
	)
	return appendCommand(attrs, index, e.scheduled(cmd))
}

// scheduled is the command's instant, unix ns on the controller's clock; 0 when it has none.
func (e *executor) scheduled(cmd *proto.Command) int64 {
	if !cmd.HasAt {
		return 0
	}
	if !cmd.Abs.IsZero() {
		return cmd.Abs.UnixNano()
	}
	return e.start.Add(cmd.After).UnixNano()
}

// command records a command that is neither an attempt nor a hold as a short span. After the
// stop path ended the executor's spans (abandon), nothing more is recorded.
func (e *executor) command(index int, cmd *proto.Command, start time.Time, err error, extra ...attribute.KeyValue) {
	e.recordCommand(start, e.commandAttrs(index, cmd, extra...), err)
}

// commandAttrs are the attributes of a command span.
func (e *executor) commandAttrs(index int, cmd *proto.Command, extra ...attribute.KeyValue) []attribute.KeyValue {
	attrs := append(e.cmdAttrs(index, cmd, len(extra)+1), extra...)
	return append(attrs, attribute.String("lock.op", cmd.Op.String()))
}

// recordCommand records a command span that began at start and ends now.
func (e *executor) recordCommand(start time.Time, attrs []attribute.KeyValue, err error) {
	e.mu.Lock()
	dead := e.dead
	e.mu.Unlock()
	if dead {
		return
	}
	sp := e.l.rec.start(semconv.SpanCommand, start, attrs)
	if err != nil {
		sp.setError(err.Error())
		_, errno := outcomeOf(err)
		sp.setAttributes(attribute.String(semconv.LockErrno, errno))
	}
	sp.endAt(e.l.rec, e.l.endClamp(e.l.clock.now(), start))
}

// recordRelease records the span of a release command that began at start and ends now, its
// attributes made on the sender from src; a failed unlock's error goes the general way.
func (e *executor) recordRelease(start time.Time, cs *cmdSpan, err error) {
	if err != nil {
		e.recordCommand(start, cs.src.appendOwn(cs.src.shared()), err)
		return
	}
	e.mu.Lock()
	dead := e.dead
	e.mu.Unlock()
	if dead {
		return
	}
	e.l.rec.done(cs, start, e.l.endClamp(e.l.clock.now(), start))
}

// allowed says whether path is one of the files this locker's command line allows, or one
// derived from them by a suffix (the scenario's {file}.2).
func (e *executor) allowed(path string) (logical string, ok bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	for _, a := range e.l.opts.Allow {
		if abs == a {
			return "{file}", true
		}
		if strings.HasPrefix(abs, a) && !strings.Contains(abs[len(a):], "/") {
			return "{file}" + abs[len(a):], true
		}
	}
	return "", false
}

func (e *executor) openFile(index int, cmd *proto.Command) {
	start := e.l.clock.now()
	logical, ok := e.allowed(cmd.Path)
	if !ok {
		e.command(index, cmd, start, fmt.Errorf("file %s is not allowed by this locker's command line", cmd.Path))
		return
	}
	if e.slots[cmd.FD] != nil {
		e.closeSlot(index, &proto.Command{Op: proto.OpClose, FD: cmd.FD, Line: cmd.Line, Text: cmd.Text})
	}
	fd, id, err := openLockFile(cmd.Path, true, logical != "{file}")
	if err != nil {
		e.l.log.Warn("file refused", "path", cmd.Path, "err", err)
		e.command(index, cmd, start, err, attribute.String(semconv.FilePath, cmd.Path), attribute.String(semconv.FileLogical, logical))
		return
	}
	e.mu.Lock()
	e.slots[cmd.FD] = &slot{fd: fd, path: cmd.Path, logical: logical, file: id}
	e.mu.Unlock()
	e.command(index, cmd, start, nil, attribute.String(semconv.FilePath, cmd.Path), attribute.String(semconv.FileLogical, logical))
}

// preparedLock is a lock command made ready before its instant, so that after the wake-up only
// the span's start lies between the instant and the lock call. Its attributes are made on the
// sender, from src.
type preparedLock struct {
	src      lockSource
	req      lockReq
	inflight inflight // what a snapshot says of the call while it waits
	// sp is the attempt's span, with room for what its end sets: one allocation per attempt.
	sp     span
	more   [3]attribute.KeyValue
	values *cycleValues
}

func (e *executor) prepareLock(index int, cmd *proto.Command) *preparedLock {
	kind, style := e.kindOf(cmd), e.styleOf(cmd)
	p := e.l.rec.values.locks.get()
	p.src = lockSource{lockerID: e.l.opts.ID, index: index, cmd: cmd, kind: kind, style: style, s: e.slots[cmd.FD], scheduled: e.scheduled(cmd)}
	p.req = lockReq{kind: kind, mode: cmd.Mode, start: cmd.Start, len: cmd.Len, wait: style == semconv.StyleWait}
	p.values = &e.l.rec.values
	p.inflight.lock = &p.src
	return p
}

func (e *executor) lock(p *preparedLock, cmd *proto.Command) {
	kind, style, s, req := p.src.kind, p.src.style, p.src.s, p.req
	// The attempt starts just before the lock call is entered: nothing but the span lies between.
	begun := e.l.clock.now()
	if e.haltedBy(begun) {
		return // the run is over: a lock not yet asked for is not asked for
	}
	span := &p.sp
	span.more = p.more[:0]
	span.box = p
	e.l.rec.begin(span, semconv.SpanAcquire, begun, &p.src)
	if s == nil {
		span.setAttributes(attribute.String(semconv.LockOutcome, semconv.OutcomeError.String()), attribute.String(semconv.LockErrno, "EBADF"))
		span.setError(fmt.Sprintf("no file open in slot %d", cmd.FD))
		span.endAt(e.l.rec, e.l.clock.now())
		return
	}
	e.mu.Lock()
	if kind == semconv.KindFlock {
		// flock(2) converts by dropping the lock it has first, then asking for the new one: a
		// blocked upgrade holds nothing (the man page says so), so the hold ends as the call starts.
		e.cut(func(h *hold) bool { return h.sameOwner(kind, cmd.FD, s.file) }, 0, math.MaxInt64, e.l.clock.now().UnixNano(), semconv.HoldConverted)
	}
	p.inflight.span, p.inflight.begin = span, begun.UnixNano()
	e.inflight = &p.inflight
	e.mu.Unlock()

	var err error
	var granted time.Time
	tries := 0
	switch style {
	case semconv.StyleWait:
		w := e.watch(span, s, req)
		err = setLock(s.fd, req)
		// The grant is stamped as the call returns, before the watcher is stopped: stopping a
		// watcher that has started waits for its goroutine, two thread wake-ups that were
		// part of every hand-off (−poll did not matter: its first look comes 5 ms into a wait).
		// From the stamp on the watcher records nothing more (span.stamp).
		granted = span.stamp(e.l.clock.now)
		tries = 1
		w.stop()
	case semconv.StyleTry:
		err = setLock(s.fd, req)
		tries = 1
		if err != nil {
			e.recordTry(span, s, req, 1, err)
		}
	case semconv.StylePoll:
		n, interval := e.pollParams(cmd)
		for tries < n {
			err = setLock(s.fd, req)
			tries++
			if err == nil {
				break
			}
			if o, _ := outcomeOf(err); o != semconv.OutcomeWouldBlock {
				break
			}
			e.recordTry(span, s, req, tries, err)
			if tries < n && !e.pause(interval) {
				break
			}
		}
	}
	if granted.IsZero() {
		granted = e.l.clock.now()
	}
	outcome, errno := outcomeOf(err)

	e.mu.Lock()
	defer e.mu.Unlock()
	e.inflight = nil
	if e.dead {
		return
	}
	span.setAttributes(attribute.String(semconv.LockOutcome, outcome.String()), attribute.String(semconv.LockErrno, errno), attribute.Int(semconv.LockTries, tries))
	if outcome == semconv.OutcomeError {
		span.setError(errno)
	}
	span.endAt(e.l.rec, granted)
	if err != nil {
		return
	}
	// A grant replaces the owner's own locks over the range (an upgrade converts a read hold).
	end := rangeEnd(cmd.Start, cmd.Len)
	e.cut(func(h *hold) bool { return h.sameOwner(kind, cmd.FD, s.file) }, cmd.Start, end, granted.UnixNano(), semconv.HoldConverted)
	h := e.l.rec.newHold()
	*h = hold{kind: kind, mode: cmd.Mode, start: cmd.Start, end: end, slot: cmd.FD, file: s.file, path: s.path, logical: s.logical, acquireID: span.id, begin: granted.UnixNano(), box: h.box}
	if kind == semconv.KindFlock {
		h.start, h.end = 0, math.MaxInt64
	}
	e.startHold(h, granted)
}

func endText(start, length int64) string {
	if length == 0 {
		return "EOF"
	}
	return fmt.Sprint(start + length)
}

func (e *executor) pollParams(cmd *proto.Command) (int, time.Duration) {
	n, interval := cmd.Tries, cmd.Interval
	if n == 0 {
		n = e.l.welcome.Tries
	}
	if n == 0 {
		n = lockmodel.DefaultTries
	}
	if interval == 0 {
		interval = e.l.welcome.Interval
	}
	if interval == 0 {
		interval = lockmodel.DefaultInterval
	}
	return n, interval
}

// pause sleeps for d unless stopped first.
func (e *executor) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.stop:
		return false
	case <-t.C:
		return true
	}
}

// recordTry adds a lock.try event for a failed non-blocking call, with what blocked it.
func (e *executor) recordTry(span *span, s *slot, req lockReq, n int, err error) {
	_, errno := outcomeOf(err)
	o := e.query(s, req)
	attrs := append(ownerAttrs(o), attribute.Int(semconv.LockTries, n), attribute.String(semconv.LockErrno, errno))
	e.addEvent(span, semconv.EventTry, attrs)
}

func (e *executor) release(index int, cmd *proto.Command, ifHeld bool) {
	kind := e.kindOf(cmd)
	start := e.l.clock.now()
	s := e.slots[cmd.FD]
	if s == nil {
		e.command(index, cmd, start, fmt.Errorf("no file open in slot %d", cmd.FD))
		return
	}
	end := rangeEnd(cmd.Start, cmd.Len)
	match := func(h *hold) bool { return h.sameOwner(kind, cmd.FD, s.file) }
	reason := semconv.HoldRelease
	if ifHeld {
		reason = semconv.HoldReleaseIf
	}
	e.mu.Lock()
	held := false
	for _, h := range e.holds {
		if match(h) && h.overlaps(cmd.Start, end) {
			held = true
		}
	}
	if ifHeld && !held {
		e.mu.Unlock()
		e.command(index, cmd, start, nil, attribute.Bool("lock.held", false))
		return
	}
	e.mu.Unlock()
	cs := e.l.rec.newCmdSpan()
	cs.src = cmdSource{lockerID: e.l.opts.ID, index: index, cmd: cmd, scheduled: e.scheduled(cmd), held: held, kind: kind}
	// The hold ends just before the unlock call is entered; its span is ended after the call,
	// so that no span work delays the hand-off to the next waiter.
	released := e.l.clock.now().UnixNano()
	err := setLock(s.fd, lockReq{kind: kind, start: cmd.Start, len: cmd.Len})
	e.mu.Lock()
	if !e.dead {
		e.cut(match, cmd.Start, end, released, reason)
	}
	e.mu.Unlock()
	e.recordRelease(start, cs, err)
}

func (e *executor) closeSlot(index int, cmd *proto.Command) {
	start := e.l.clock.now()
	s := e.slots[cmd.FD]
	if s == nil {
		e.command(index, cmd, start, fmt.Errorf("no file open in slot %d", cmd.FD))
		return
	}
	e.mu.Lock()
	// Closing any descriptor of a file drops all of the process's POSIX locks on it; OFD and
	// flock locks go with their own open file description only.
	match := func(h *hold) bool {
		if h.kind == semconv.KindPOSIX {
			return h.file == s.file
		}
		return h.slot == cmd.FD
	}
	e.slots[cmd.FD] = nil
	e.mu.Unlock()
	closed := e.l.clock.now().UnixNano()
	err := unix.Close(s.fd)
	e.mu.Lock()
	if !e.dead {
		e.cut(match, 0, math.MaxInt64, closed, semconv.HoldClose, attribute.Int(semconv.LockClosedFD, cmd.FD))
	}
	e.mu.Unlock()
	e.command(index, cmd, start, err, attribute.String(semconv.FilePath, s.path))
}

func (e *executor) sleep(index int, cmd *proto.Command) {
	start := e.l.clock.now()
	e.mu.Lock()
	e.inflight = &inflight{desc: fmt.Sprintf("sleep %s (line %d)", cmd.Duration, cmd.Line)}
	e.mu.Unlock()
	e.pause(cmd.Duration)
	e.mu.Lock()
	e.inflight = nil
	e.mu.Unlock()
	e.command(index, cmd, start, nil)
}

func (e *executor) getlk(index int, cmd *proto.Command) {
	start := e.l.clock.now()
	s := e.slots[cmd.FD]
	if s == nil {
		e.command(index, cmd, start, fmt.Errorf("no file open in slot %d", cmd.FD))
		return
	}
	kind := e.kindOf(cmd)
	o := e.query(s, lockReq{kind: kind, mode: cmd.Mode, start: cmd.Start, len: cmd.Len})
	attrs := append(e.cmdAttrs(index, cmd, 14), ownerAttrs(o)...)
	attrs = append(attrs, attribute.String(semconv.LockKind, kind.String()), attribute.String(semconv.LockMode, cmd.Mode.String()),
		attribute.Int64(semconv.LockStart, cmd.Start), attribute.Int64(semconv.LockLen, cmd.Len),
		attribute.String(semconv.FilePath, s.path), attribute.String(semconv.FileLogical, s.logical))
	e.l.rec.start(semconv.SpanGetlk, start, attrs).endAt(e.l.rec, e.l.clock.now())
}

// endAll ends every hold at now for reason. e.mu is held.
func (e *executor) endAll(now int64, reason semconv.HoldEnd) {
	for _, h := range e.holds {
		e.endHold(h, unixTime(now), reason)
	}
	e.holds = nil
}

// abandon ends the spans the executor cannot end itself: the attempt it is blocked in (outcome
// blocked) and the holds the process's exit is about to release. They end at the run's end
// instant, the same for every locker — but never before they began (a command that started
// as the run ended).
func (e *executor) abandon(reason end) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return
	}
	e.dead = true
	now := e.l.clock.now()
	if in := e.inflight; in != nil && in.span != nil {
		in.span.setAttributes(attribute.String(semconv.LockOutcome, semconv.OutcomeBlocked.String()))
		in.span.endAt(e.l.rec, e.l.endClamp(now, unixTime(in.begin)))
	}
	holdEnd := semconv.HoldExit
	if reason == endRunEnd {
		holdEnd = semconv.HoldRunEnd
	}
	for _, h := range e.holds {
		e.endHold(h, e.l.endClamp(now, unixTime(h.begin)), holdEnd)
	}
	e.holds = nil
}

// snapshot reports the executor thread's state as the kernel sees it.
func (e *executor) snapshot() *proto.Snapshot {
	e.mu.Lock()
	tid, executed, holds := e.tid, e.executed, len(e.holds)
	desc := ""
	if e.inflight != nil {
		desc = e.inflight.text()
	}
	e.mu.Unlock()
	snap := &proto.Snapshot{At: e.l.clock.now().UnixNano(), PID: e.l.pid, TID: tid, Inflight: desc, Executed: executed, Holds: holds, Stack: []string{}}
	if ps, err := host.ReadProcess(e.l.pid, tid); err == nil {
		snap.State = ps.State
		snap.Wchan = ps.Wchan
		if ps.Stack != nil {
			snap.Stack = ps.Stack
		}
	}
	return snap
}
