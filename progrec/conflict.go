package progrec

import (
	"context"
	"fmt"
	"os"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// repeatEvery is how often an unchanged conflict owner is written again, so that "still
// blocked by the same owner" rests on a fresh answer (as the lockers' watcher does).
const repeatEvery = 2 * time.Second

// Owner is what the kernel names as the holder a request waits for.
type Owner struct {
	PID        int
	Mode       semconv.Mode // ModeNone: nothing conflicts
	Start, Len int64
	Source     string // a semconv.OwnerFrom* value
}

// Key identifies the answer: a change of it is a new lock.conflict event.
func (o Owner) Key() string { return fmt.Sprint(o.PID, o.Mode, o.Start, o.Len) }

// ownerAttrs are a lock.conflict event's (or a getlk span's) owner attributes, with the pid
// mapped to a traced process where it is one.
func (r *Recorder) ownerAttrs(self *tproc, o Owner) []*commonpb.KeyValue {
	var me *Proc
	if self != nil {
		me = self.p
	}
	return OwnerAttrs(o, me, func(pid int) *Proc {
		if tp := r.procs[pid]; tp != nil {
			return tp.p
		}
		return nil
	}, r.w.Host())
}

// OwnerAttrs are the attributes of a lock.conflict event (or an observation) naming o: the
// pid mapped by the owner rule (lockmodel) to the asker itself or the recorded process byPID
// finds, and whether a foreign pid is a process of this node at all. F_GETLK's pid 0 for a held
// lock is no process of this node either: FUSE (GlusterFS) turns a holder's pid that the
// mounting node's pid namespace does not have into 0.
func OwnerAttrs(o Owner, self *Proc, byPID func(int) *Proc, node string) []*commonpb.KeyValue {
	class, id, local := semconv.OwnerNone, int64(-1), int64(1)
	if o.Mode != semconv.ModeNone {
		// Every process is on this node: the candidates are the asker and the one byPID finds.
		t, asker := &lockmodel.Processes{}, int64(-1)
		if self != nil {
			t.Add(lockmodel.Process{Locker: self.ID, Node: node, PID: int64(self.PID)})
			asker = self.ID
		}
		if p := byPID(o.PID); p != nil {
			t.Add(lockmodel.Process{Locker: p.ID, Node: node, PID: int64(p.PID)})
		}
		w := t.Owner(lockmodel.Query{Node: node, PID: int64(o.PID), Asker: asker})
		class, id = w.Class, w.Locker()
		if class == semconv.OwnerForeign && !host.ProcessExists(o.PID) || o.PID == 0 && o.Source == semconv.OwnerFromGetlk {
			local = 0
		}
	}
	return []*commonpb.KeyValue{
		Num(semconv.LockOwnerPID, int64(o.PID)), Str(semconv.LockOwnerMode, o.Mode.String()), Num(semconv.LockOwnerStart, o.Start),
		Num(semconv.LockOwnerLen, o.Len), Num(semconv.LockOwnerLockerID, id), Str(semconv.LockOwnerClass, class.String()),
		Str(semconv.LockOwnerSource, o.Source), Str(semconv.Node, node), Num(semconv.LockOwnerLocal, local),
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
			if o.Key() == a.owner && now.Sub(a.ownerAt) < repeatEvery {
				continue
			}
			a.owner, a.ownerAt = o.Key(), now
			r.w.Event(a.span, now, semconv.EventConflict, r.ownerAttrs(tp, o))
		}
	}
}

// ownerOf finds what blocks attempt a of process tp (see ConflictOwner).
func (r *Recorder) ownerOf(tp *tproc, a *attempt, entries []host.LockEntry) Owner {
	o := ConflictOwner(entries, Request{File: a.file, Kind: a.lock.Kind, Mode: a.lock.Mode, Start: a.lock.Start, Len: a.lock.Len,
		PID: tp.p.PID, FD: a.lock.FD}, r.ofdOwner)
	if o.Source == semconv.OwnerFromNone && a.lock.Kind != semconv.KindFlock {
		return r.getlkOwner(tp, a)
	}
	return o
}

// Request is a waiting lock request of process PID through descriptor FD.
type Request struct {
	File       host.FileID
	Kind       semconv.Kind
	Mode       semconv.Mode
	Start, Len int64
	PID, FD    int
}

// ConflictOwner finds what blocks req: the first conflicting holder in /proc/locks that is
// not the requester's own lock; an OFD line (pid -1) is named by ofd (through the fdinfo of
// the processes that may hold it), -1 when it cannot be. Source is OwnerFromNone when
// /proc/locks shows nothing conflicting: a distributed file system shows only this node's
// locks there, and F_GETLK from a process that holds nothing is the next question.
func ConflictOwner(entries []host.LockEntry, req Request, ofd func(host.LockEntry) int) Owner {
	class := map[semconv.Kind]string{semconv.KindPOSIX: "POSIX", semconv.KindOFD: "OFDLCK", semconv.KindFlock: "FLOCK"}[req.Kind]
	mode := "READ"
	if req.Mode == semconv.ModeWrite {
		mode = "WRITE"
	}
	s, e := host.RequestRange(req.Start, req.Len)
	var own []host.LockEntry
	if req.Kind == semconv.KindOFD {
		own, _ = host.FDLocks(req.PID, req.FD)
	}
	mine := func(x host.LockEntry) bool {
		if x.Class == "OFDLCK" {
			return containsLock(own, x)
		}
		return x.PID == req.PID
	}
	if c := host.Conflicting(entries, host.Request{File: req.File, Class: class, Mode: mode, Start: s, End: e}, mine); len(c) > 0 {
		x := c[0]
		o := Owner{PID: x.PID, Mode: lowerMode(x.Mode), Start: x.Start, Len: lockLen(x), Source: semconv.OwnerFromProcLocks}
		if x.Class == "OFDLCK" && ofd != nil {
			if pid := ofd(x); pid > 0 {
				o.PID, o.Source = pid, semconv.OwnerFromFDInfo
			}
		}
		return o
	}
	if req.Kind == semconv.KindFlock {
		return Owner{Mode: semconv.ModeNone, Source: semconv.OwnerFromProcLocks}
	}
	return Owner{Mode: semconv.ModeNone, Source: semconv.OwnerFromNone}
}

// ofdOwner names the traced process holding OFD lock x through one of its descriptors.
func (r *Recorder) ofdOwner(x host.LockEntry) int {
	for _, h := range r.shared {
		if h.lock.Kind != semconv.KindOFD || h.file != x.File() {
			continue
		}
		if locks, err := host.FDLocks(h.tp.p.PID, h.lock.FD); err == nil && containsLock(locks, x) {
			return h.tp.p.PID
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

// getlkOwner asks F_GETLK from lockprobe's own descriptor (see Getlk).
func (r *Recorder) getlkOwner(tp *tproc, a *attempt) Owner {
	f := r.obs[a.file]
	if f == nil {
		var err error
		if f, err = os.Open(a.lock.Path); err != nil {
			return Owner{Mode: semconv.ModeNone, Source: semconv.OwnerFromNone}
		}
		r.obs[a.file] = f
	}
	o := Getlk(f, a.lock.Kind, a.lock.Mode, a.lock.Start, a.lock.Len)
	if o.PID == tp.p.PID {
		return Owner{Mode: semconv.ModeNone, Source: semconv.OwnerFromGetlk}
	}
	return o
}

// Getlk asks F_GETLK (F_OFD_GETLK for ofd) on f, a read-only descriptor lockprobe opened
// itself: it holds no locks, so closing it drops nothing of anyone's, and every lock is
// another's to it — a requester's own included, so an answer naming the requester is no
// answer about what blocks it.
func Getlk(f *os.File, kind semconv.Kind, mode semconv.Mode, start, length int64) Owner {
	typ := int16(unix.F_RDLCK)
	if mode == semconv.ModeWrite {
		typ = unix.F_WRLCK
	}
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: length}
	cmd := unix.F_GETLK
	if kind == semconv.KindOFD {
		cmd = unix.F_OFD_GETLK
	}
	if err := unix.FcntlFlock(f.Fd(), cmd, &lk); err != nil {
		return Owner{Mode: semconv.ModeNone, Source: semconv.OwnerFromError + unix.ErrnoName(err.(unix.Errno))}
	}
	if lk.Type == unix.F_UNLCK {
		return Owner{Mode: semconv.ModeNone, Source: semconv.OwnerFromGetlk}
	}
	m := semconv.ModeRead
	if lk.Type == unix.F_WRLCK {
		m = semconv.ModeWrite
	}
	return Owner{PID: int(lk.Pid), Mode: m, Start: lk.Start, Len: lk.Len, Source: semconv.OwnerFromGetlk}
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
