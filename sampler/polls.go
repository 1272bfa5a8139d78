package sampler

import (
	"fmt"
	"syscall"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockcall"
	"github.com/lockprobe/lockprobe/progrec"
	"github.com/lockprobe/lockprobe/ptracer"
	"github.com/lockprobe/lockprobe/semconv"
)

// A process that polls — F_SETLK, a pause, F_SETLK again, as casacore does for its first ~30
// tries — is in no lock call between its tries, and a look catches it in one only by chance.
// With eBPF, watch sees each try as it returns: the failed tries of one request make one `poll`
// attempt, blocked by what /proc/locks names at each look, as exec records them.

// staleAfter ends a poll whose process has not tried again for this long: it gave up.
const staleAfter = 5 * time.Second

// tries records the tracer's events since the last look: failed F_SETLK tries, the end of a
// poll (a grant, another error, a wait, or no try for staleAfter), and what blocks each open
// poll by this look's /proc/locks.
func (s *state) tries(l *Look, evs []ptracer.Event) {
	for _, e := range evs {
		c := e.Call
		if c.Op != lockcall.OpLock {
			continue
		}
		f := s.fileOf(e)
		if f == nil {
			continue
		}
		key := fmt.Sprint(e.PID, c.FD, c.Kind, c.Mode, c.Start, c.Len, f.ID)
		x := s.polls[key]
		switch {
		case e.Kind == ptracer.CallEnter && c.Wait:
			// It goes on to wait: the looks see the wait; the poll ended at its last try.
			if x != nil {
				s.w.EndAttempt(x.span, x.last, semconv.StylePoll, semconv.OutcomeWouldBlock, "EAGAIN", x.tries)
				delete(s.polls, key)
			}
		case e.Kind != ptracer.CallReturn || c.Wait:
		case e.Errno == unix.EAGAIN || e.Errno == unix.EACCES:
			if x == nil {
				p := s.proc(l, e.PID)
				lk := progrec.Lock{Kind: c.Kind, Mode: c.Mode, Start: c.Start, Len: c.Len, Path: f.Path, FD: c.FD, TID: e.TID, Text: c.Text()}
				x = &seenSpan{span: s.w.StartAttempt(p, lk, semconv.StylePoll, e.At), p: p, lock: lk, style: semconv.StylePoll}
				s.polls[key] = x
			}
			x.tries++
			x.last = e.At
			s.w.Event(x.span, e.At, semconv.EventTry, []*commonpb.KeyValue{progrec.Num(semconv.LockTries, int64(x.tries)),
				progrec.Str(semconv.LockErrno, unix.ErrnoName(e.Errno))})
		case x != nil:
			outcome, errno := semconv.OutcomeGranted, ""
			switch {
			case e.Errno == unix.EDEADLK:
				outcome, errno = semconv.OutcomeDeadlock, "EDEADLK"
			case e.Errno != 0:
				outcome, errno = semconv.OutcomeError, unix.ErrnoName(syscall.Errno(e.Errno))
			}
			s.w.EndAttempt(x.span, e.At, semconv.StylePoll, outcome, errno, x.tries+1)
			delete(s.polls, key)
		}
	}
	for key, x := range s.polls {
		if l.At.Sub(x.last) > staleAfter {
			s.w.EndAttempt(x.span, x.last, semconv.StylePoll, semconv.OutcomeWouldBlock, "EAGAIN", x.tries)
			delete(s.polls, key)
			continue
		}
		o := progrec.ConflictOwner(l.Locks, progrec.Request{File: s.fileByPath(x.lock.Path).ID, Kind: x.lock.Kind, Mode: x.lock.Mode,
			Start: x.lock.Start, Len: x.lock.Len, PID: x.p.PID, FD: x.lock.FD}, nil)
		if k := o.Key(); k != x.owner || l.At.Sub(x.ownAt) >= 2*time.Second {
			x.owner, x.ownAt = k, l.At
			s.w.Event(x.span, l.At, semconv.EventConflict, progrec.OwnerAttrs(o, x.p, s.byPID, s.w.Host()))
		}
	}
}

// fileOf is the watched file a traced call was about, by the kernel's device and inode.
func (s *state) fileOf(e ptracer.Event) *File {
	if e.Desc == nil {
		return nil
	}
	id := host.FileID{Major: e.Desc.Major, Minor: e.Desc.Minor, Inode: e.Desc.Ino}
	for _, f := range s.files {
		if f.ID == id {
			return f
		}
	}
	return nil
}

func (s *state) fileByPath(path string) *File {
	for _, f := range s.files {
		if f.Path == path {
			return f
		}
	}
	return &File{}
}
