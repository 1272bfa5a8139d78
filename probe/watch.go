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
// executor, armed for each wait: a timer made for every lock call (with its goroutine's
// channels) was a good part of the lock thread's work per storm cycle, where nearly every wait
// is granted long before the first look. Its first look comes shortly after the lock call has
// had time to block, then one per poll interval, on the timer's goroutine.
type watcher struct {
	e     *executor
	timer *time.Timer // fires the first look of the wait armed last

	mu sync.Mutex
	// gen counts the waits armed; stopped and running are the last one stopped and the one
	// whose looks are under way, so that a look the timer began for an earlier wait (one whose
	// stop found the timer fired) never takes a later wait for its own.
	gen, stopped, running uint64
	span                  *span
	s                     *slot
	req                   lockReq
	quit, done            chan struct{} // made by the looks when they start
}

// arm starts watching the wait of span on s for req.
func (w *watcher) arm(span *span, s *slot, req lockReq) {
	poll := w.e.l.welcome.Poll
	if poll <= 0 {
		poll = lockmodel.DefaultPoll
	}
	w.mu.Lock()
	w.gen++
	w.span, w.s, w.req = span, s, req
	w.mu.Unlock()
	// A timer, not a goroutine started now: starting one here could wake another thread just
	// as the lock call is made, stealing a core from a locker that fires at the same instant.
	first := min(poll/10, 5*time.Millisecond)
	if w.timer == nil {
		w.timer = time.AfterFunc(first, w.looks)
	} else {
		w.timer.Reset(first)
	}
}

// stop ends the watch of the wait armed last, and waits for its looks to end if they began.
func (w *watcher) stop() {
	w.timer.Stop()
	w.mu.Lock()
	w.stopped = w.gen
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

// looks polls the owner of the wait armed last until it is stopped.
func (w *watcher) looks() {
	w.mu.Lock()
	if w.stopped == w.gen || w.running == w.gen {
		w.mu.Unlock()
		return
	}
	w.running = w.gen
	quit, done := make(chan struct{}), make(chan struct{})
	w.quit, w.done = quit, done
	span, s, req := w.span, w.s, w.req
	w.mu.Unlock()
	defer close(done)
	e := w.e
	poll := e.l.welcome.Poll
	if poll <= 0 {
		poll = lockmodel.DefaultPoll
	}
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
			e.addEvent(span, semconv.EventConflict, ownerAttrs(o))
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
