package progrec

import (
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/lockcall"
	"github.com/lockprobe/lockprobe/semconv"
)

// Files maps the files of a run to the paths the trace names them by.
type Files map[host.FileID]string

// TakeSnapshot writes what the kernel says at instant at: each process's thread that matters
// (the one in a lock call, else the first) with its state, wchan, kernel stack and the call it
// is in, and the /proc/locks lines of files.
func (w *Writer) TakeSnapshot(at time.Time, procs []*Proc, files Files) {
	var evs []*tracepb.Span_Event
	arch, archErr := lockcall.Native()
	for _, p := range procs {
		threads, err := host.ReadThreads(p.PID)
		if err != nil || len(threads) == 0 {
			continue
		}
		t := host.WaitingThread(threads)
		infl := ""
		if archErr == nil {
			infl = CallText(arch, t)
		}
		evs = append(evs, &tracepb.Span_Event{TimeUnixNano: ns(at), Name: semconv.EventState, Attributes: []*commonpb.KeyValue{
			Num(semconv.LockerID, p.ID), Num(semconv.ProcessPID, int64(p.PID)), Num(semconv.ProcTID, int64(t.TID)),
			Str(semconv.ProcState, t.State), Str(semconv.ProcWchan, t.Wchan), Strs(semconv.ProcStack, t.Stack),
			Str(semconv.ProcInfl, infl), Str(semconv.ProcSyscall, t.Syscall), Str(semconv.ProcCommandLine, p.CommandLine()),
		}})
	}
	if entries, err := host.ReadLocks(); err == nil {
		for _, e := range entries {
			path, ok := files[e.File()]
			if !ok {
				continue
			}
			evs = append(evs, &tracepb.Span_Event{TimeUnixNano: ns(at), Name: semconv.EventProcLock, Attributes: []*commonpb.KeyValue{
				Num(semconv.ProcLockID, e.ID), Num(semconv.ProcLockBy, e.BlockedBy), Str(semconv.ProcLockCl, e.Class),
				Str(semconv.ProcLockRW, e.Mode), Num(semconv.ProcLockPI, int64(e.PID)), Num(semconv.ProcLockSt, e.Start),
				Num(semconv.ProcLockEn, e.End), Str(semconv.ProcLockRa, e.Raw), Str(semconv.FileLogical, path),
			}})
		}
	}
	w.Snapshot(at, evs)
}

// CallText says which lock call a thread is in, read from /proc without stopping it: the
// decoded call with the struct flock from the process's memory ("fcntl(5, F_SETLKW, {F_WRLCK,
// start=0, len=1})"), or "" when it is in none.
func CallText(arch lockcall.Arch, t host.ProcState) string {
	c, ok := PendingCall(arch, t.PID, t.Syscall)
	if !ok || c.Op == lockcall.OpClose || c.Op == lockcall.OpDup || c.Op == lockcall.OpCloseRange {
		return ""
	}
	return c.Text()
}

// PendingCall decodes the lock call a thread is blocked in from its /proc/.../syscall text,
// reading the struct flock from the process's memory.
func PendingCall(arch lockcall.Arch, pid int, syscallText string) (lockcall.Call, bool) {
	ps, err := lockcall.ParseProcSyscall(strings.TrimSpace(syscallText))
	if err != nil || !ps.InCall {
		return lockcall.Call{}, false
	}
	c, ok := lockcall.Decode(arch, ps.Nr, ps.Args)
	if !ok {
		return c, false
	}
	if c.Addr != 0 && !c.HaveFlock {
		if b, err := host.ReadMem(pid, c.Addr, lockcall.FlockSize); err == nil {
			_ = c.SetFlock(b)
		}
	}
	return c, true
}
