package progrec

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockcall"
	"github.com/lockprobe/lockprobe/semconv"
)

// Options tune a Recorder. The zero value gives the defaults.
type Options struct {
	// Poll is how often the owners of blocked requests are looked up (/proc/locks, then
	// F_GETLK from lockprobe's own descriptor). Optional: 100 ms.
	Poll time.Duration
	// Log gets diagnostics. Optional.
	Log *slog.Logger
	// Async says the calls are reported after the fact (eBPF) with what the kernel saw
	// (lockcall.Desc): /proc is not read for what a call touched.
	Async bool
}

// Recorder turns the lock calls of traced processes into spans. It models what each process
// holds the way the kernel does — POSIX locks per process and file (a grant replaces the
// owner's locks over its range, an unlock may split one, closing any descriptor of the file
// drops them all), OFD and flock locks per open file description, shared by every descriptor
// of it in any process and dropped with the last (ofd.go) — so that holds are spans from grant
// to release. Consecutive failed F_SETLK
// tries of one request are one `poll` attempt with a `lock.try` event per try (casacore polls
// once a second before it waits); a granted call that changes nothing (casacore re-checks its
// lock on every table access) is counted on the hold instead of making a span. It is safe for
// concurrent use.
type Recorder struct {
	mu     sync.Mutex
	w      *Writer
	opts   Options
	procs  map[int]*tproc
	nextID int64
	obs    map[host.FileID]*os.File // lockprobe's own read-only descriptors for F_GETLK
	paths  map[host.FileID]string   // the path a file was first seen under
	ended  bool
	// descs are the open file descriptions OFD and flock locks were taken through; shared
	// are those locks (their owner is the description, not the process that took them).
	descs    map[uint64]*desc
	nextDesc uint64
	shared   []*hold
}

type tproc struct {
	p     *Proc
	holds []*hold       // POSIX holds: the process owns them
	calls map[int]*call // by thread
	poll  *attempt      // the open group of failed tries, if any
	// fds caches what the process's descriptors refer to. Every call that can make a number
	// refer to another file is traced — close, dup2/dup3 onto it, close_range, exec (close on
	// exec) — and drops its entry; open, dup and F_DUPFD only take numbers that are free.
	fds map[int]fdFile
	// lastCall and lastText keep the text of the call made last: a loop makes the same call.
	lastCall lockcall.Call
	lastText string
}

// fdFile is what a descriptor refers to.
type fdFile struct {
	path string
	id   host.FileID
	dev  string // "major:minor", as spans carry it
	ofd  uint64 // the open file description, once an OFD or flock call needed it
}

type hold struct {
	span     *Span
	lock     Lock
	file     host.FileID
	rechecks int64
	tp       *tproc // the process that took it (its span's)
	ofd      uint64 // OFD and flock: the owner, an open file description
}

type attempt struct {
	span      *Span
	lock      Lock
	file      host.FileID
	wait      bool
	tries     int
	lastTry   time.Time
	lastErrno string
	owner     string // the last conflict owner written
	ownerAt   time.Time
}

type call struct {
	c    lockcall.Call
	lock Lock
	file host.FileID
	at   time.Time
	att  *attempt
	noop bool
	ofd  uint64 // OFD and flock: the open file description, the lock's owner
}

// NewRecorder records into w.
func NewRecorder(w *Writer, opts Options) *Recorder {
	if opts.Poll <= 0 {
		opts.Poll = 100 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{w: w, opts: opts, procs: map[int]*tproc{}, obs: map[host.FileID]*os.File{}, paths: map[host.FileID]string{},
		descs: map[uint64]*desc{}}
}

// ProcStart records a new process (a copy of the program after its exec, or a fork).
func (r *Recorder) ProcStart(at time.Time, pid, ppid int, argv []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended || r.procs[pid] != nil {
		return
	}
	tp := &tproc{p: &Proc{ID: r.nextID, PID: pid, PPID: ppid, Argv: argv, Start: at}, calls: map[int]*call{}, fds: map[int]fdFile{}}
	r.nextID++
	r.procs[pid] = tp
	// A fork inherits no POSIX locks; it shares the parent's open file descriptions, and with
	// them their OFD and flock locks.
	if parent := r.procs[ppid]; parent != nil {
		r.inherit(tp, parent)
	}
	r.w.StartProc(tp.p)
}

// ProcExec records the process's new command line. POSIX locks survive exec; descriptors
// closed on exec drop them like a close, which the next lock call or the exit will show.
func (r *Recorder) ProcExec(at time.Time, pid int, argv []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tp := r.procs[pid]; tp != nil && !r.ended {
		clear(tp.fds)
		r.afterExec(tp, at)
		r.w.ExecProc(tp.p, at, argv)
	}
}

// ProcExit ends everything of the process: its requests die with it, the kernel drops its locks.
func (r *Recorder) ProcExit(at time.Time, pid int, status, signal string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tp := r.procs[pid]
	if tp == nil || r.ended {
		return
	}
	r.endProc(tp, at, semconv.HoldExit)
	r.w.EndProc(tp.p, at, true, status, signal)
	delete(r.procs, pid)
}

// endProc ends the process's open attempts (blocked) and holds (how).
func (r *Recorder) endProc(tp *tproc, at time.Time, how semconv.HoldEnd) {
	r.endPoll(tp)
	for _, c := range tp.calls {
		if c.att != nil && c.att != tp.poll {
			r.w.EndAttempt(c.att.span, at, styleOf(c.att), semconv.OutcomeBlocked, "", c.att.tries+1)
		}
	}
	tp.calls = map[int]*call{}
	for _, h := range tp.holds {
		r.w.EndHold(h.span, at, how, -1, h.rechecks)
	}
	tp.holds = nil
	r.dropProc(tp, at, how)
}

// End ends the run at instant at: open attempts are `blocked`, holds `run-end`, the processes'
// spans end there. Later events are ignored.
func (r *Recorder) End(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	pids := make([]int, 0, len(r.procs))
	for pid := range r.procs {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	for _, pid := range pids {
		tp := r.procs[pid]
		r.endProc(tp, at, semconv.HoldRunEnd)
		r.w.EndProc(tp.p, at, false, "", "")
	}
	for _, h := range r.shared {
		r.w.EndHold(h.span, at, semconv.HoldRunEnd, -1, h.rechecks)
	}
	r.shared = nil
	for _, f := range r.obs {
		f.Close()
	}
	r.ended = true
}

// Procs returns the processes seen so far that are still running, by pid.
func (r *Recorder) Procs() []*Proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Proc, 0, len(r.procs))
	for _, tp := range r.procs {
		out = append(out, tp.p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// Enter records a thread entering a call. With d nil the thread is stopped (ptrace) and its
// descriptors are read from /proc; otherwise d is what the kernel said the descriptor referred
// to at the call (eBPF), when /proc may already say something else.
func (r *Recorder) Enter(at time.Time, pid, tid int, c lockcall.Call, d *lockcall.Desc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tp := r.procs[pid]
	if tp == nil || r.ended {
		return
	}
	if d != nil {
		r.learn(tp, c, d)
	}
	switch c.Op {
	case lockcall.OpClose:
		r.closeFDs(tp, at, []int{c.FD}, d)
	case lockcall.OpDup:
		if c.NewFD != c.FD {
			r.closeFDs(tp, at, []int{c.NewFD}, d)
		}
	case lockcall.OpCloseRange:
		var fds []int
		if r.opts.Async {
			for fd := range tp.fds {
				if fd >= c.FD && fd <= c.Last {
					fds = append(fds, fd)
				}
			}
		} else {
			fds = r.lockFDsIn(tp, c.FD, c.Last)
		}
		r.closeFDs(tp, at, fds, nil)
		for fd := range tp.fds {
			if fd >= c.FD && fd <= c.Last {
				delete(tp.fds, fd)
			}
		}
	case lockcall.OpLock, lockcall.OpUnlock, lockcall.OpGetlk:
		r.enterLock(tp, at, tid, c, d)
	}
}

// learn puts what the kernel said about the call's descriptor into the cache, ahead of the
// call's own handling: the path from /proc when it still names that file, else the path an
// earlier call on the file gave, else device and inode.
func (r *Recorder) learn(tp *tproc, c lockcall.Call, d *lockcall.Desc) {
	fd := c.FD
	if c.Op == lockcall.OpDup {
		fd = c.NewFD
	}
	id := host.FileID{Major: d.Major, Minor: d.Minor, Inode: d.Ino}
	if f, ok := tp.fds[fd]; ok && f.id == id {
		return
	}
	path := r.paths[id]
	if path == "" {
		if p, pid, _, err := host.FDFile(tp.p.PID, fd); err == nil && pid == id {
			path = p
		} else {
			path = fmt.Sprintf("dev %d:%d inode %d", id.Major, id.Minor, id.Inode)
		}
		r.paths[id] = path
	}
	tp.fds[fd] = fdFile{path: path, id: id, dev: fmt.Sprintf("%d:%d", id.Major, id.Minor)}
}

func (r *Recorder) enterLock(tp *tproc, at time.Time, tid int, c lockcall.Call, d *lockcall.Desc) {
	if prev := tp.calls[tid]; prev != nil && prev.c == c {
		return // the same call entered again after a signal interrupted it
	}
	f, ok := r.fdFile(tp, c.FD)
	if !ok {
		return
	}
	path, id := f.path, f.id
	switch {
	case c.Whence == 0:
		c.Resolve(0, 0)
	case d != nil:
		c.Resolve(d.Pos, d.Size)
	case c.Whence == 1:
		pos, _ := host.FDPos(tp.p.PID, c.FD)
		c.Resolve(pos, 0)
	default:
		_, _, size, _ := host.FDFile(tp.p.PID, c.FD)
		c.Resolve(0, size)
	}
	l := Lock{Kind: c.Kind, Mode: c.Mode, Start: c.Start, Len: c.Len, Path: path,
		Dev: f.dev, Inode: id.Inode, FD: c.FD, TID: tid, Text: tp.text(c)}
	var ofd uint64
	if c.Kind != semconv.KindPOSIX {
		var kernel uint64
		if d != nil {
			kernel = d.OFD
		}
		ofd = r.descOf(tp, c.FD, f, kernel)
	}
	if c.Op == lockcall.OpUnlock {
		// The hold ends as the unlock is entered; its return changes nothing (a tracer need
		// not stop there).
		r.endPoll(tp)
		r.cut(tp, at, c.Kind, id, ofd, c.Start, c.Len, semconv.HoldRelease)
		return
	}
	cl := &call{c: c, lock: l, file: id, at: at, ofd: ofd}
	tp.calls[tid] = cl
	if c.Op == lockcall.OpGetlk {
		return
	}
	if r.covered(tp, l, id, ofd) {
		cl.noop = true // a re-check: changes nothing, even between the tries of a poll
		return
	}
	if p := tp.poll; p != nil {
		if sameRequest(p, l, id) && !c.Wait {
			cl.att = p // one more try of the same poll
			return
		}
		r.endPoll(tp)
	}
	if c.Kind == semconv.KindFlock {
		// flock(2) converts by dropping the old lock first.
		r.cut(tp, at, c.Kind, id, ofd, 0, 0, semconv.HoldConverted)
	}
	cl.att = &attempt{span: r.w.StartAttempt(tp.p, l, c.Style(), at), lock: l, file: id, wait: c.Wait}
}

// Return records the call's return.
func (r *Recorder) Return(at time.Time, pid, tid int, c lockcall.Call, errno syscall.Errno, restart bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tp := r.procs[pid]
	if tp == nil || r.ended {
		return
	}
	cl := tp.calls[tid]
	if cl == nil || restart {
		return
	}
	delete(tp.calls, tid)
	if cl.c.Op == lockcall.OpGetlk {
		r.getlk(tp, cl, c, at, errno)
		return
	}
	if cl.noop {
		if errno == 0 {
			for _, h := range *r.holdsOf(tp, cl.lock.Kind) {
				if coversLock(h, cl.lock, cl.file, tp, cl.ofd) {
					h.rechecks++
				}
			}
			return
		}
		// We believed it held; the kernel says otherwise: record the attempt after all.
		cl.att = &attempt{span: r.w.StartAttempt(tp.p, cl.lock, cl.c.Style(), cl.at), lock: cl.lock, file: cl.file, wait: cl.c.Wait}
	}
	a := cl.att
	if a == nil {
		return
	}
	name := ""
	if errno != 0 {
		name = unix.ErrnoName(errno)
	}
	switch {
	case errno == 0:
		r.w.EndAttempt(a.span, at, styleOf(a), semconv.OutcomeGranted, "", a.tries+1)
		if tp.poll == a {
			tp.poll = nil
		}
		r.grant(tp, at, cl, a)
	case (errno == unix.EAGAIN || errno == unix.EACCES) && !cl.c.Wait:
		a.tries++
		a.lastTry, a.lastErrno = at, name
		r.w.Event(a.span, at, semconv.EventTry, []*commonpb.KeyValue{Num(semconv.LockTries, int64(a.tries)), Str(semconv.LockErrno, name)})
		tp.poll = a
	case errno == unix.EDEADLK:
		r.w.EndAttempt(a.span, at, styleOf(a), semconv.OutcomeDeadlock, name, a.tries+1)
	default:
		r.w.EndAttempt(a.span, at, styleOf(a), semconv.OutcomeError, name, a.tries+1)
	}
}

// endPoll ends an open group of failed tries at its last try: the process went on to
// something else.
func (r *Recorder) endPoll(tp *tproc) {
	if a := tp.poll; a != nil {
		r.w.EndAttempt(a.span, a.lastTry, styleOf(a), semconv.OutcomeWouldBlock, a.lastErrno, a.tries)
		tp.poll = nil
	}
}

func styleOf(a *attempt) semconv.Style {
	switch {
	case a.wait:
		return semconv.StyleWait
	case a.tries > 1:
		return semconv.StylePoll
	}
	return semconv.StyleTry
}

func sameRequest(a *attempt, l Lock, id host.FileID) bool {
	return a.file == id && a.lock.Kind == l.Kind && a.lock.Mode == l.Mode && a.lock.Start == l.Start && a.lock.Len == l.Len && a.lock.FD == l.FD
}

// sameOwner says whether a hold belongs to the owner of a request of tp on file id: the
// process for POSIX, the open file description ofd for OFD and flock.
func sameOwner(h *hold, kind semconv.Kind, id host.FileID, tp *tproc, ofd uint64) bool {
	if h.file != id || h.lock.Kind != kind {
		return false
	}
	if kind == semconv.KindPOSIX {
		return h.tp == tp
	}
	return h.ofd == ofd
}

// holdsOf returns the list the holds of kind that tp may own live in: its own for POSIX, the
// descriptions' for OFD and flock.
func (r *Recorder) holdsOf(tp *tproc, kind semconv.Kind) *[]*hold {
	if kind == semconv.KindPOSIX {
		return &tp.holds
	}
	return &r.shared
}

func coversLock(h *hold, l Lock, id host.FileID, tp *tproc, ofd uint64) bool {
	if !sameOwner(h, l.Kind, id, tp, ofd) || h.lock.Mode != l.Mode {
		return false
	}
	if l.Kind == semconv.KindFlock {
		return true
	}
	return h.lock.Start <= l.Start && end(l.Start, l.Len) <= end(h.lock.Start, h.lock.Len)
}

// covered says whether the request's owner already holds it unchanged.
func (r *Recorder) covered(tp *tproc, l Lock, id host.FileID, ofd uint64) bool {
	for _, h := range *r.holdsOf(tp, l.Kind) {
		if coversLock(h, l, id, tp, ofd) {
			return true
		}
	}
	return false
}

const eof = int64(1<<63 - 1)

func end(start, length int64) int64 {
	if length <= 0 {
		return eof
	}
	return start + length
}

// cut ends the owner's holds over [start, start+length) at instant at (how), and reopens
// what lies outside the range as new holds: POSIX and OFD unlock and conversion split
// ranges. flock holds go whole.
func (r *Recorder) cut(tp *tproc, at time.Time, kind semconv.Kind, id host.FileID, ofd uint64, start, length int64, how semconv.HoldEnd) {
	s, e := start, end(start, length)
	list := r.holdsOf(tp, kind)
	var kept []*hold
	for _, h := range *list {
		if !sameOwner(h, kind, id, tp, ofd) {
			kept = append(kept, h)
			continue
		}
		hs, he := h.lock.Start, end(h.lock.Start, h.lock.Len)
		if kind != semconv.KindFlock && (he <= s || e <= hs) {
			kept = append(kept, h)
			continue
		}
		r.w.EndHold(h.span, at, how, -1, h.rechecks)
		if kind == semconv.KindFlock {
			continue
		}
		for _, part := range [][2]int64{{hs, min(he, s)}, {max(hs, e), he}} {
			if part[0] >= part[1] {
				continue
			}
			l := h.lock
			l.Start, l.Len = part[0], part[1]-part[0]
			if part[1] == eof {
				l.Len = 0
			}
			kept = append(kept, &hold{span: r.w.StartHold(h.tp.p, l, at, nil), lock: l, file: h.file, tp: h.tp, ofd: h.ofd})
		}
	}
	*list = kept
}

func (r *Recorder) grant(tp *tproc, at time.Time, cl *call, a *attempt) {
	c := cl.c
	if c.Kind != semconv.KindFlock {
		r.cut(tp, at, c.Kind, cl.file, cl.ofd, cl.lock.Start, cl.lock.Len, semconv.HoldConverted)
	}
	list := r.holdsOf(tp, c.Kind)
	*list = append(*list, &hold{span: r.w.StartHold(tp.p, cl.lock, at, a.span), lock: cl.lock, file: cl.file, tp: tp, ofd: cl.ofd})
}

// closeFDs ends what closing fds drops: every POSIX hold of the process on a file one of them
// refers to, and the OFD and flock holds taken through them.
func (r *Recorder) closeFDs(tp *tproc, at time.Time, fds []int, d *lockcall.Desc) {
	for _, fd := range fds {
		f, ok := tp.fds[fd]
		if !ok && (len(tp.holds) > 0 || tp.poll != nil) {
			f, ok = r.fdFile(tp, fd)
		}
		delete(tp.fds, fd)
		if !ok {
			continue // nothing locked through it, or not open: close fails with EBADF
		}
		if tp.poll != nil && tp.poll.lock.FD == fd {
			r.endPoll(tp)
		}
		kept := tp.holds[:0]
		for _, h := range tp.holds {
			if h.file == f.id {
				r.w.EndHold(h.span, at, semconv.HoldClose, fd, h.rechecks)
				continue
			}
			kept = append(kept, h)
		}
		tp.holds = kept
		if f.ofd != 0 {
			var others int64
			if d != nil && len(fds) == 1 && d.Refs > 0 {
				others = d.Refs - 1 // the kernel's count, this descriptor's included
			}
			r.dropRef(tp, fd, f.ofd, at, semconv.HoldClose, others)
		}
	}
}

// fdFile says what descriptor fd of the process refers to, from the cache or /proc (the
// thread is stopped in the call).
func (r *Recorder) fdFile(tp *tproc, fd int) (fdFile, bool) {
	if f, ok := tp.fds[fd]; ok {
		return f, true
	}
	if r.opts.Async {
		return fdFile{}, false
	}
	path, id, _, err := host.FDFile(tp.p.PID, fd)
	if err != nil {
		r.opts.Log.Debug("unreadable descriptor", "pid", tp.p.PID, "fd", fd, "err", err)
		return fdFile{}, false
	}
	f := fdFile{path: path, id: id, dev: fmt.Sprintf("%d:%d", id.Major, id.Minor)}
	r.paths[id] = path
	tp.fds[fd] = f
	return f, true
}

// lockFDsIn returns the descriptors in [first, last] that may matter for the process's holds.
func (r *Recorder) lockFDsIn(tp *tproc, first, last int) []int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", tp.p.PID))
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err == nil && fd >= first && fd <= last {
			out = append(out, fd)
		}
	}
	return out
}

// getlk records a program's own F_GETLK and its answer.
func (r *Recorder) getlk(tp *tproc, cl *call, ret lockcall.Call, at time.Time, errno syscall.Errno) {
	if errno != 0 {
		return
	}
	o := Owner{PID: int(ret.PID), Mode: ret.Mode, Start: ret.Start, Len: ret.Len, Source: semconv.OwnerFromGetlk}
	if ret.Mode == semconv.ModeNone {
		o = Owner{Mode: semconv.ModeNone, Source: semconv.OwnerFromGetlk}
	}
	r.w.Getlk(tp.p, cl.lock, cl.at, at, r.ownerAttrs(tp, o))
}

// text is c.Text(), built once while the process repeats the call.
func (tp *tproc) text(c lockcall.Call) string {
	if tp.lastText == "" || tp.lastCall != c {
		tp.lastCall, tp.lastText = c, c.Text()
	}
	return tp.lastText
}
