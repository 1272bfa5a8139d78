package probe

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// owner is one answer to "who blocks this request?".
type owner struct {
	pid        int
	mode       semconv.Mode
	start, len int64
	lockerID   int
	class      semconv.OwnerClass
	source     string
	node       string
}

func (o owner) same(p owner) bool {
	return o.pid == p.pid && o.mode == p.mode && o.start == p.start && o.len == p.len && o.class == p.class
}

var noOwner = owner{mode: semconv.ModeNone, lockerID: -1, class: semconv.OwnerNone, source: semconv.OwnerFromNone}

// query asks the kernel who would block req on slot s: F_GETLK (F_OFD_GETLK) on the locker's
// own descriptor (never a second one: closing it would drop the process's POSIX locks), and
// /proc/locks for flock, which has no query call.
func (e *executor) query(s *slot, req lockReq) owner {
	if req.kind == semconv.KindFlock {
		return e.queryProcLocks(s)
	}
	fl, found, err := getLock(s.fd, req)
	if err != nil {
		o := noOwner
		o.class, o.source = semconv.OwnerUnknown, semconv.OwnerFromError+unix.ErrnoName(errnoOf(err))
		return o
	}
	if !found {
		o := noOwner
		o.source = semconv.OwnerFromGetlk // evidence: the file system says nothing conflicts
		return o
	}
	o := owner{pid: int(fl.Pid), mode: modeOfType(fl.Type), start: fl.Start, len: fl.Len, lockerID: -1, source: semconv.OwnerFromGetlk}
	e.classify(&o, s)
	return o
}

func errnoOf(err error) unix.Errno {
	if en, ok := err.(unix.Errno); ok {
		return en
	}
	return 0
}

// classify maps an l_pid to a locker of this run by the owner rule: a pid names a process on
// the answering node only, and OFD locks (and NFSv4) give no pid at all.
func (e *executor) classify(o *owner, s *slot) {
	w := e.peers.Owner(lockmodel.Query{Node: e.l.node, PID: int64(o.pid), Asker: int64(e.l.opts.ID)})
	o.class, o.lockerID, o.node = w.Class, int(w.Locker()), w.Node
	if o.pid == -1 {
		e.resolveOFD(o, s)
	}
}

// resolveOFD names the owner of an OFD lock (pid -1 everywhere) by finding a local peer whose
// descriptor of the same file lists a matching lock in /proc/PID/fdinfo, as lslocks does.
func (e *executor) resolveOFD(o *owner, s *slot) {
	for _, p := range e.peers.List() {
		if p.Node != e.l.node || p.Locker < 0 {
			continue
		}
		pid := int(p.PID)
		for fd := 3; fd < 64; fd++ {
			locks, err := host.FDLocks(pid, fd)
			if err != nil {
				continue
			}
			for _, lk := range locks {
				if lk.File() != s.file || lk.Class != "OFDLCK" || lk.Start != o.start {
					continue
				}
				if (lk.Mode == "WRITE") != (o.mode == semconv.ModeWrite) {
					continue
				}
				o.class, o.lockerID, o.node, o.pid, o.source = semconv.OwnerLocker, int(p.Locker), p.Node, pid, semconv.OwnerFromFDInfo
				return
			}
		}
	}
}

// queryProcLocks finds, in /proc/locks, the holder that this process's flock request waits
// behind, or a holder of the file when no request of ours is queued.
func (e *executor) queryProcLocks(s *slot) owner {
	entries, err := host.ReadLocks()
	if err != nil {
		o := noOwner
		o.class, o.source = semconv.OwnerUnknown, semconv.OwnerFromNone
		return o
	}
	entries = host.FilterFile(entries, s.file)
	for _, g := range host.GroupLocks(entries) {
		for _, w := range g.Waiters {
			if w.PID != e.l.pid || g.Holder.Class != "FLOCK" {
				continue
			}
			o := owner{pid: g.Holder.PID, mode: procMode(g.Holder.Mode), lockerID: -1, source: semconv.OwnerFromProcLocks}
			e.classify(&o, s)
			return o
		}
	}
	o := noOwner
	if e.l.localLocks {
		o.source = semconv.OwnerFromProcLocks // evidence only where this kernel arbitrates the locks
	}
	return o
}

func procMode(m string) semconv.Mode {
	switch m {
	case "READ":
		return semconv.ModeRead
	case "WRITE":
		return semconv.ModeWrite
	}
	return semconv.ModeNone
}

// addEvent adds an event to a live span and sends it to the controller at once as a partial
// record, instead of only when the span ends.
func (e *executor) addEvent(span *span, name string, attrs []attribute.KeyValue) {
	span.addEventNow(e.l.rec, name, e.l.clock.now, attrs, true)
}

// repeatEvery is how often a waiter's watcher records an unchanged answer.
const repeatEvery = 2 * time.Second

// watcher polls the conflict owner while an attempt waits and records each change. One per
// executor: its first look comes shortly after a wait began (when the lock call has had time
// to block), then one per poll interval, on the timer's goroutine. A timer set or reset for
// every lock call was a good part of a storm cycle — setting a timer earlier than the one the
// runtime's poller sleeps for wakes that thread, at every cycle — while nearly every storm
// wait is granted long before the first look. So the timer is left running across waits: when
// it fires, a wait younger than the first look's delay sets it again for the rest, no wait
// lets it lapse, and a wait the delay old starts the looks. A storm's waits cost two stores
// under a lock each, and the timer fires once per delay while waits come.
type watcher struct {
	e     *executor
	timer *time.Timer

	mu sync.Mutex
	// gen counts the waits armed; waiting says the last one has not been stopped, since is
	// when it began; set says the timer is set; running is the wait whose looks are under way.
	gen, running uint64
	waiting, set bool
	since        time.Time
	span         *span
	s            *slot
	req          lockReq
	quit, done   chan struct{} // made by the looks when they start
}

// delays are how long a wait lasts before its first look, and the interval of the looks after.
func (w *watcher) delays() (first, poll time.Duration) {
	poll = w.e.l.welcome.Poll
	if poll <= 0 {
		poll = lockmodel.DefaultPoll
	}
	return min(poll/10, 5*time.Millisecond), poll
}

// arm starts watching the wait of span on s for req.
func (w *watcher) arm(span *span, s *slot, req lockReq) {
	w.mu.Lock()
	w.gen++
	w.waiting, w.since = true, time.Now()
	w.span, w.s, w.req = span, s, req
	start := !w.set
	w.set = true
	w.mu.Unlock()
	if start {
		// A timer, not a goroutine started now: starting one here could wake another thread
		// just as the lock call is made, stealing a core from a locker that fires at the same
		// instant.
		first, _ := w.delays()
		if w.timer == nil {
			w.timer = time.AfterFunc(first, w.fire)
		} else {
			w.timer.Reset(first)
		}
	}
}

// stop ends the watch of the wait armed last, and waits for its looks to end if they began.
func (w *watcher) stop() {
	w.mu.Lock()
	w.waiting = false
	var quit, done chan struct{}
	if w.running == w.gen {
		quit, done = w.quit, w.done
	}
	w.span = nil
	w.mu.Unlock()
	if quit != nil {
		close(quit)
		<-done
	}
}

// fire runs when the timer does: it starts the looks of a wait old enough, or sets the timer
// again for a younger one.
func (w *watcher) fire() {
	first, _ := w.delays()
	w.mu.Lock()
	if !w.waiting || w.running == w.gen {
		w.set = false
		w.mu.Unlock()
		return
	}
	if d := first - time.Since(w.since); d > 0 {
		w.timer.Reset(d)
		w.mu.Unlock()
		return
	}
	w.set = false
	w.running = w.gen
	quit, done := make(chan struct{}), make(chan struct{})
	w.quit, w.done = quit, done
	span, s, req := w.span, w.s, w.req
	w.mu.Unlock()
	w.looks(span, s, req, quit, done)
}

// looks polls the owner of one wait until quit is closed, then closes done.
func (w *watcher) looks(span *span, s *slot, req lockReq, quit, done chan struct{}) {
	defer close(done)
	e := w.e
	_, poll := w.delays()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last owner
	var lastAt time.Time // zero: the first answer is recorded whatever it is
	for {
		select {
		case <-quit:
			return
		case <-timer.C:
		}
		// Stamped when asked, as the observer's answers are: no earlier than the instant it
		// describes, however long the process then waited for a core.
		asked := e.l.clock.now()
		o := e.query(s, req)
		// Changes are recorded at once; an unchanged answer again every repeatEvery, so that
		// "still the same owner, long after it released" rests on a fresh answer, and a
		// watcher stuck in a dead client shows as silence.
		if !o.same(last) || time.Since(lastAt) >= repeatEvery {
			select {
			case <-quit: // granted meanwhile: the answer no longer describes a waiter
				return
			default:
			}
			span.addEvent(e.l.rec, semconv.EventConflict, asked, ownerAttrs(o), true)
			last, lastAt = o, time.Now()
		}
		timer.Reset(poll)
	}
}

// watch starts watching the wait of span: the executor's watcher, armed for it.
func (e *executor) watch(span *span, s *slot, req lockReq) *watcher {
	if e.watcher == nil {
		e.watcher = &watcher{e: e}
	}
	e.watcher.arm(span, s, req)
	return e.watcher
}
