package progrec

import (
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/semconv"
)

// OFD and flock locks belong to an open file description, not to a process or a descriptor:
// every descriptor of it — a dup, or the copy a fork inherits — is the same owner (a child's
// flock on an inherited descriptor converts the parent's lock, its unlock drops it), and the
// lock goes only when the last descriptor of the description is closed. The recorder keeps the
// descriptions it has seen locks through, each with the descriptors known to refer to it.
//
// Which description a descriptor refers to: from eBPF, the kernel's struct file (Desc.OFD);
// under ptrace, kcmp(KCMP_FILE) against a descriptor already known for a description of the
// same file (the tracer may compare its tracees' descriptors).

// desc is an open file description that locks were taken through.
type desc struct {
	id   uint64
	file host.FileID
	refs map[ref]bool // descriptors known to refer to it
}

type ref struct{ pid, fd int }

// kcmpFile is KCMP_FILE of kcmp(2).
const kcmpFile = 0

// sameFile says whether descriptor fd1 of pid1 and fd2 of pid2 are one open file description.
func sameFile(pid1, fd1, pid2, fd2 int) (bool, error) {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), kcmpFile, uintptr(fd1), uintptr(fd2), 0)
	if e != 0 {
		return false, e
	}
	return r == 0, nil
}

// descOf returns the description descriptor fd of tp refers to (f is its cache entry), adding
// the descriptor to the description's references. kernel is the kernel's identity of it (eBPF),
// 0 under ptrace.
func (r *Recorder) descOf(tp *tproc, fd int, f fdFile, kernel uint64) uint64 {
	if f.ofd != 0 {
		return f.ofd
	}
	var d *desc
	if kernel != 0 {
		d = r.descs[kernel]
		if d == nil {
			d = &desc{id: kernel, file: f.id, refs: map[ref]bool{}}
			r.descs[kernel] = d
		}
	} else {
		for _, x := range r.descs {
			if x.file != f.id {
				continue
			}
			for rf := range x.refs {
				if same, err := sameFile(tp.p.PID, fd, rf.pid, rf.fd); err == nil && same {
					d = x
				} else if err != nil {
					r.opts.Log.Debug("kcmp", "err", err)
				}
				break // one known descriptor of a description is as good as any
			}
			if d != nil {
				break
			}
		}
		if d == nil {
			r.nextDesc++
			d = &desc{id: r.nextDesc, file: f.id, refs: map[ref]bool{}}
			r.descs[d.id] = d
		}
	}
	d.refs[ref{tp.p.PID, fd}] = true
	f.ofd = d.id
	tp.fds[fd] = f
	return d.id
}

// inherit gives a forked child the parent's references: it has a copy of every descriptor.
func (r *Recorder) inherit(child, parent *tproc) {
	for _, d := range r.descs {
		for rf := range d.refs {
			if rf.pid != parent.p.PID {
				continue
			}
			d.refs[ref{child.p.PID, rf.fd}] = true
			if f, ok := parent.fds[rf.fd]; ok {
				child.fds[rf.fd] = f
			}
		}
	}
}

// dropRef removes descriptor fd of tp from description id; when it was the last descriptor of
// the description, its locks go (ended at instant at, how). others > 0 says the kernel counts
// more references than this one (eBPF's reference count), whatever the recorder knows. Under
// ptrace, before calling the description gone, the traced processes' descriptors of the file
// are compared with this one (still open: the close is being entered).
func (r *Recorder) dropRef(tp *tproc, fd int, id uint64, at time.Time, how semconv.HoldEnd, others int64) {
	d := r.descs[id]
	if d == nil {
		return
	}
	delete(d.refs, ref{tp.p.PID, fd})
	if len(d.refs) == 0 && others <= 0 && !r.opts.Async && how == semconv.HoldClose {
		r.findRefs(d, tp.p.PID, fd)
	}
	if len(d.refs) > 0 || others > 0 {
		return
	}
	delete(r.descs, id)
	kept := r.shared[:0]
	for _, h := range r.shared {
		if h.ofd == id {
			closed := -1
			if how == semconv.HoldClose {
				closed = fd
			}
			r.w.EndHold(h.span, at, how, closed, h.rechecks)
			continue
		}
		kept = append(kept, h)
	}
	r.shared = kept
}

// findRefs looks through the traced processes' descriptors of d's file for others of the
// description that descriptor fd of pid refers to.
func (r *Recorder) findRefs(d *desc, pid, fd int) {
	for qpid := range r.procs {
		ents, err := os.ReadDir("/proc/" + strconv.Itoa(qpid) + "/fd")
		if err != nil {
			continue
		}
		for _, e := range ents {
			qfd, err := strconv.Atoi(e.Name())
			if err != nil || qpid == pid && qfd == fd {
				continue
			}
			if _, id, _, err := host.FDFile(qpid, qfd); err != nil || id != d.file {
				continue
			}
			if same, err := sameFile(pid, fd, qpid, qfd); err == nil && same {
				d.refs[ref{qpid, qfd}] = true
			}
		}
	}
}

// dropProc removes every reference of an ended process: descriptions it alone referred to
// lose their locks.
func (r *Recorder) dropProc(tp *tproc, at time.Time, how semconv.HoldEnd) {
	for id, d := range r.descs {
		for rf := range d.refs {
			if rf.pid == tp.p.PID {
				r.dropRef(tp, rf.fd, id, at, how, 0)
			}
		}
	}
}

// afterExec drops the references of descriptors the exec closed (close-on-exec).
func (r *Recorder) afterExec(tp *tproc, at time.Time) {
	for id, d := range r.descs {
		for rf := range d.refs {
			if rf.pid != tp.p.PID {
				continue
			}
			if _, fid, _, err := host.FDFile(tp.p.PID, rf.fd); err != nil || fid != d.file {
				r.dropRef(tp, rf.fd, id, at, semconv.HoldClose, 0)
			}
		}
	}
}
