// Package sampler looks at processes that share files through locks without stopping them:
// which processes have the files open (/proc/PID/fd), which of their threads sit in a lock call
// (/proc/PID/task/TID/syscall, with the pending struct flock read from /proc/PID/mem), their
// state, wchan and kernel stack, the files' lines in /proc/locks (holders and `->` waiters),
// the OFD owners from /proc/PID/fdinfo, and F_GETLK from lockprobe's own descriptor, which never
// locks. Look takes one such look; Watch takes them over time and records them with progrec as
// a trace the analysis reads; Who turns one look into the table `lockprobe who` prints.
package sampler

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockcall"
	"github.com/lockprobe/lockprobe/progrec"
	"github.com/lockprobe/lockprobe/semconv"
)

// File is a watched file.
type File struct {
	Path string
	ID   host.FileID
	obs  *os.File // lockprobe's own read-only descriptor, for F_GETLK
}

// OpenFiles identifies the files (stat, no descriptor of the watched processes is touched) and
// opens each read-only for F_GETLK. A path that cannot be stat'ed is an error.
func OpenFiles(paths []string) ([]*File, error) {
	var out []*File
	for _, p := range paths {
		id, err := host.StatFile(p)
		if err != nil {
			CloseFiles(out)
			return nil, err
		}
		f := &File{Path: p, ID: id}
		if fh, err := os.Open(p); err == nil {
			f.obs = fh
		}
		out = append(out, f)
	}
	return out, nil
}

// CloseFiles closes lockprobe's own descriptors (it holds no locks through them).
func CloseFiles(fs []*File) {
	for _, f := range fs {
		if f.obs != nil {
			f.obs.Close()
		}
	}
}

// Proc is one process that has a watched file open.
type Proc struct {
	PID  int
	Argv []string
	FDs  []host.Opener
	// Threads are all its threads; Pending those in a lock call on a watched file.
	Threads []host.ProcState
	Pending []Pending
}

// Pending is a lock call a thread is blocked in.
type Pending struct {
	TID   int
	Call  lockcall.Call
	File  *File
	Owner progrec.Owner // what blocks it, by /proc/locks (else F_GETLK from lockprobe)
}

// Observed is F_GETLK over the whole file from lockprobe's own descriptor.
type Observed struct {
	File  *File
	Mode  semconv.Mode // the mode asked about
	Owner progrec.Owner
}

// Look is one look at the files and the processes that have them open.
type Look struct {
	At       time.Time
	Procs    []*Proc          // by pid
	Locks    []host.LockEntry // the files' lines of /proc/locks
	OFD      map[int64]int    // /proc/locks line id of an OFD lock → the pid whose fdinfo lists it
	Observed []Observed
}

// ErrGone and ErrNotYours mark -pid values that name no process, or one this user may not look at.
var (
	ErrGone     = errors.New("no such process")
	ErrNotYours = errors.New("not yours: its /proc entries need ptrace access (run as its user or as root)")
)

// Take looks once. With pids, only those processes are looked at, and one that is gone or not
// readable is an error wrapping ErrGone or ErrNotYours.
func Take(files []*File, pids []int) (*Look, error) {
	arch, err := lockcall.Native()
	if err != nil {
		return nil, err
	}
	ids := make([]host.FileID, len(files))
	byID := map[host.FileID]*File{}
	for i, f := range files {
		ids[i] = f.ID
		byID[f.ID] = f
	}
	for _, pid := range pids {
		if !host.ProcessExists(pid) {
			return nil, fmt.Errorf("process %d: %w", pid, ErrGone)
		}
		if _, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("process %d: %w", pid, ErrNotYours)
		}
	}
	ops, err := host.OpenersOf(pids, ids)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %v", ErrGone, err)
		}
		if errors.Is(err, host.ErrNotYours) {
			return nil, fmt.Errorf("%w: %v", ErrNotYours, err)
		}
		return nil, err
	}
	l := &Look{At: time.Now(), OFD: map[int64]int{}}
	entries, err := host.ReadLocks()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if byID[e.File()] != nil {
			l.Locks = append(l.Locks, e)
		}
	}
	procs := map[int]*Proc{}
	self := os.Getpid()
	for _, op := range ops {
		if op.PID == self {
			continue // lockprobe's own F_GETLK descriptor
		}
		p := procs[op.PID]
		if p == nil {
			p = &Proc{PID: op.PID, Argv: host.Cmdline(op.PID)}
			procs[op.PID] = p
		}
		p.FDs = append(p.FDs, op)
		if locks, err := host.FDLocks(op.PID, op.FD); err == nil {
			for _, x := range locks {
				for _, e := range l.Locks {
					if !e.Waiter && e.Class == "OFDLCK" && e.Class == x.Class && e.Mode == x.Mode && e.Start == x.Start && e.End == x.End && e.File() == x.File() {
						l.OFD[e.ID] = op.PID
					}
				}
			}
		}
	}
	ofd := func(x host.LockEntry) int {
		if pid, ok := l.OFD[x.ID]; ok {
			return pid
		}
		return -1
	}
	for _, p := range procs {
		threads, err := host.ReadThreads(p.PID)
		if err != nil {
			continue // it ended meanwhile
		}
		p.Threads = threads
		for _, t := range threads {
			c, ok := progrec.PendingCall(arch, p.PID, t.Syscall)
			if !ok || (c.Op != lockcall.OpLock && c.Op != lockcall.OpGetlk) {
				continue
			}
			var f *File
			for _, op := range p.FDs {
				if op.FD == c.FD {
					f = byID[op.File]
				}
			}
			if f == nil || c.Op != lockcall.OpLock {
				continue
			}
			if c.Whence != 0 {
				pos, _ := host.FDPos(p.PID, c.FD)
				st, _ := os.Stat(f.Path)
				var size int64
				if st != nil {
					size = st.Size()
				}
				c.Resolve(pos, size)
			}
			pd := Pending{TID: t.TID, Call: c, File: f}
			pd.Owner = progrec.ConflictOwner(l.Locks, progrec.Request{File: f.ID, Kind: c.Kind, Mode: c.Mode, Start: c.Start, Len: c.Len,
				PID: p.PID, FD: c.FD}, ofd)
			if pd.Owner.Source == semconv.OwnerFromNone && f.obs != nil {
				if o := progrec.Getlk(f.obs, c.Kind, c.Mode, c.Start, c.Len); o.PID != p.PID {
					pd.Owner = o
				}
			}
			p.Pending = append(p.Pending, pd)
		}
		l.Procs = append(l.Procs, p)
	}
	sort.Slice(l.Procs, func(i, j int) bool { return l.Procs[i].PID < l.Procs[j].PID })
	for _, f := range files {
		if f.obs == nil {
			continue
		}
		for _, m := range []semconv.Mode{semconv.ModeWrite, semconv.ModeRead} {
			l.Observed = append(l.Observed, Observed{File: f, Mode: m, Owner: progrec.Getlk(f.obs, semconv.KindPOSIX, m, 0, 0)})
		}
	}
	return l, nil
}

// Proc returns the look's process of that pid, or nil.
func (l *Look) Proc(pid int) *Proc {
	for _, p := range l.Procs {
		if p.PID == pid {
			return p
		}
	}
	return nil
}

// Holder is one held lock, by /proc/locks, with its owner named where it can be.
type Holder struct {
	Entry host.LockEntry
	PID   int // the owner: /proc/locks' pid, or for OFD the pid whose fdinfo lists it (-1 when none)
	File  *File
}

// Holders returns the granted locks of the look, in /proc/locks' order.
func (l *Look) Holders(files []*File) []Holder {
	var out []Holder
	for _, e := range l.Locks {
		if e.Waiter {
			continue
		}
		h := Holder{Entry: e, PID: e.PID}
		if e.Class == "OFDLCK" {
			h.PID = -1
			if pid, ok := l.OFD[e.ID]; ok {
				h.PID = pid
			}
		}
		for _, f := range files {
			if f.ID == e.File() {
				h.File = f
			}
		}
		out = append(out, h)
	}
	return out
}
