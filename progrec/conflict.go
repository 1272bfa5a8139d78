package progrec

import (
	"context"
	"fmt"
	"os"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/semconv"
)

// repeatEvery is how often an unchanged conflict owner is written again, so that "still
// blocked by the same owner" rests on a fresh answer (as the lockers' watcher does).
const repeatEvery = 2 * time.Second

// owner is what the kernel names as the holder a request waits for.
type owner struct {
	pid           int
	mode          semconv.Mode
	start, length int64
	source        string
}

func (o owner) key() string { return fmt.Sprint(o.pid, o.mode, o.start, o.length) }

// ownerAttrs are a lock.conflict event's (or a getlk span's) owner attributes, with the pid
// mapped to a traced process where it is one.
func (r *Recorder) ownerAttrs(self *tproc, o owner) []*commonpb.KeyValue {
	class, id, local := semconv.OwnerNone, int64(-1), int64(1)
	if o.mode != semconv.ModeNone {
		switch tp := r.procs[o.pid]; {
		case o.pid > 0 && self != nil && o.pid == self.p.PID:
			class, id = semconv.OwnerSelf, self.p.ID
		case tp != nil:
			class, id = semconv.OwnerLocker, tp.p.ID
		case o.pid <= 0:
			class = semconv.OwnerUnknown
		default:
			class = semconv.OwnerForeign
			if !host.ProcessExists(o.pid) {
				local = 0
			}
		}
	}
	return []*commonpb.KeyValue{
		Num(semconv.LockOwnerPID, int64(o.pid)), Str(semconv.LockOwnerMode, o.mode.String()), Num(semconv.LockOwnerStart, o.start),
		Num(semconv.LockOwnerLen, o.length), Num(semconv.LockOwnerLockerID, id), Str(semconv.LockOwnerClass, class.String()),
		Str(semconv.LockOwnerSource, o.source), Str(semconv.Node, r.w.Host()), Num(semconv.LockOwnerLocal, local),
	}
}

// Watch looks up the owners of blocked requests every Poll until ctx ends.
func (r *Recorder) Watch(ctx context.Context) {
	t := time.NewTicker(r.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.poll(now)
		}
	}
}

func (r *Recorder) poll(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	var waiting []*tproc
	for _, tp := range r.procs {
		if tp.poll != nil || len(tp.calls) > 0 {
			waiting = append(waiting, tp)
		}
	}
	if len(waiting) == 0 {
		return
	}
	entries, err := host.ReadLocks()
	if err != nil {
		r.opts.Log.Debug("read /proc/locks", "err", err)
	}
	for _, tp := range waiting {
		seen := map[*attempt]bool{}
		for _, cl := range tp.calls {
			if cl.att != nil {
				seen[cl.att] = true
			}
		}
		if tp.poll != nil {
			seen[tp.poll] = true
		}
		for a := range seen {
			o := r.ownerOf(tp, a, entries)
			if o.key() == a.owner && now.Sub(a.ownerAt) < repeatEvery {
				continue
			}
			a.owner, a.ownerAt = o.key(), now
			r.w.Event(a.span, now, semconv.EventConflict, r.ownerAttrs(tp, o))
		}
	}
}

// ownerOf finds what blocks attempt a of process tp: the first conflicting holder in
// /proc/locks that is not the requester's own lock (OFD lines, pid -1, named through the
// traced processes' fdinfo); when /proc/locks shows none — a distributed file system shows
// only this node's locks there — F_GETLK from lockprobe's own descriptor, which holds nothing.
func (r *Recorder) ownerOf(tp *tproc, a *attempt, entries []host.LockEntry) owner {
	class := map[semconv.Kind]string{semconv.KindPOSIX: "POSIX", semconv.KindOFD: "OFDLCK", semconv.KindFlock: "FLOCK"}[a.lock.Kind]
	mode := "READ"
	if a.lock.Mode == semconv.ModeWrite {
		mode = "WRITE"
	}
	s, e := host.RequestRange(a.lock.Start, a.lock.Len)
	req := host.Request{File: a.file, Class: class, Mode: mode, Start: s, End: e}
	var own []host.LockEntry
	if a.lock.Kind == semconv.KindOFD {
		own, _ = host.FDLocks(tp.p.PID, a.lock.FD)
	}
	mine := func(x host.LockEntry) bool {
		if x.Class == "OFDLCK" {
			return containsLock(own, x)
		}
		return x.PID == tp.p.PID
	}
	if c := host.Conflicting(entries, req, mine); len(c) > 0 {
		x := c[0]
		o := owner{pid: x.PID, mode: lowerMode(x.Mode), start: x.Start, length: lockLen(x), source: semconv.OwnerFromProcLocks}
		if x.Class == "OFDLCK" {
			if pid := r.ofdOwner(x); pid > 0 {
				o.pid, o.source = pid, semconv.OwnerFromFDInfo
			}
		}
		return o
	}
	if a.lock.Kind == semconv.KindFlock {
		return owner{mode: semconv.ModeNone, source: semconv.OwnerFromProcLocks}
	}
	return r.getlkOwner(tp, a)
}

// ofdOwner names the traced process holding OFD lock x through one of its descriptors.
func (r *Recorder) ofdOwner(x host.LockEntry) int {
	for pid, tp := range r.procs {
		for _, h := range tp.holds {
			if h.lock.Kind != semconv.KindOFD || h.file != x.File() {
				continue
			}
			if locks, err := host.FDLocks(pid, h.lock.FD); err == nil && containsLock(locks, x) {
				return pid
			}
		}
	}
	return -1
}

func containsLock(list []host.LockEntry, x host.LockEntry) bool {
	for _, l := range list {
		if l.Class == x.Class && l.Mode == x.Mode && l.Start == x.Start && l.End == x.End && l.File() == x.File() {
			return true
		}
	}
	return false
}

// getlkOwner asks F_GETLK (F_OFD_GETLK) on a read-only descriptor lockprobe opened itself: it
// holds no locks, so closing it drops nothing of anyone's, and it sees every lock as foreign —
// the requester's own included, which is why an answer naming the requester is no answer.
func (r *Recorder) getlkOwner(tp *tproc, a *attempt) owner {
	f := r.obs[a.file]
	if f == nil {
		var err error
		if f, err = os.Open(a.lock.Path); err != nil {
			return owner{mode: semconv.ModeNone, source: semconv.OwnerFromNone}
		}
		r.obs[a.file] = f
	}
	typ := int16(unix.F_RDLCK)
	if a.lock.Mode == semconv.ModeWrite {
		typ = unix.F_WRLCK
	}
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: a.lock.Start, Len: a.lock.Len}
	cmd := unix.F_GETLK
	if a.lock.Kind == semconv.KindOFD {
		cmd = unix.F_OFD_GETLK
	}
	if err := unix.FcntlFlock(f.Fd(), cmd, &lk); err != nil || lk.Type == unix.F_UNLCK || int(lk.Pid) == tp.p.PID {
		return owner{mode: semconv.ModeNone, source: semconv.OwnerFromGetlk}
	}
	m := semconv.ModeRead
	if lk.Type == unix.F_WRLCK {
		m = semconv.ModeWrite
	}
	return owner{pid: int(lk.Pid), mode: m, start: lk.Start, length: lk.Len, source: semconv.OwnerFromGetlk}
}

func lowerMode(m string) semconv.Mode {
	if m == "WRITE" {
		return semconv.ModeWrite
	}
	return semconv.ModeRead
}

// lockLen converts /proc/locks' inclusive end back to a length (0: to the end).
func lockLen(x host.LockEntry) int64 {
	if x.End == host.EOF {
		return 0
	}
	return x.End - x.Start + 1
}
