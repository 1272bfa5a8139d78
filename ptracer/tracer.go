// Package ptracer runs programs under ptrace with a seccomp filter that stops them only on
// lock calls (and the calls that drop POSIX locks), and reports each such call at its entry
// and its exit, every process the programs fork and every exit, as Events. It needs no root
// for the user's own programs: the traced child installs the filter itself (with
// no_new_privs) before it execs the program.
//
// A tracee stopped at a call stays stopped until the handler returns: the handler sees the
// process exactly at the call. Every tracee carries PTRACE_O_EXITKILL, so a tracer that dies —
// even by SIGKILL — takes its tracees with it instead of leaving them stopped forever.
package ptracer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/lockcall"
)

// Kind says what an Event is.
type Kind int

// Event kinds.
const (
	ProcStart  Kind = iota // a traced process appeared: the program after its exec, or a fork
	ProcExec               // a traced process replaced its program
	CallEnter              // a thread entered a lock call; it is stopped until the handler returns
	CallReturn             // the call returned (Ret, Errno); Restart says it will be entered again. Only for calls NeedsReturn names
	ProcExit               // a traced process ended (all its threads)
)

var kindNames = [...]string{"start", "exec", "enter", "return", "exit"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one thing a traced process did.
type Event struct {
	Kind Kind
	At   time.Time
	PID  int // the process (thread group)
	TID  int // the thread; PID for Start, Exec, ProcExit
	PPID int // Start: the parent (0 for a program the tracer started)
	// Copy is the index of the copy (Options.Copies) the process descends from.
	Copy int
	Argv []string // Start, Exec
	Call lockcall.Call
	// Desc is the descriptor's file as the kernel saw it at the call (a return carries its
	// entry's), from a tracer that does not stop the thread (eBPF); nil from ptrace, whose
	// handler reads /proc meanwhile.
	Desc *lockcall.Desc
	// Ret is the call's result, Errno its error (0 on success).
	Ret   int64
	Errno syscall.Errno
	// Restart: the call was interrupted by a signal and the kernel will enter it again.
	Restart bool
	// Status and Signal: how a process ended ("exit status 0", "signal: killed"; Signal is
	// the signal's name or "").
	Status, Signal string
}

// Options say what to run. Program and Helper are required.
type Options struct {
	// Program is the program's path (resolved by the caller), Args its argv[1:].
	Program string
	Args    []string
	// Helper is the argv that starts the traced child's side: a program that calls
	// InstallAndExec(path, argv, env) with the path and argv it is given after its own
	// arguments (lockprobe's hidden `exec-child` command). Required.
	Helper []string
	// Copies is how many copies of the program to start. Optional: 1.
	Copies int
	// Env, Dir, Stdin, Stdout, Stderr are the program's. Optional: the tracer's environment and
	// folder, no input, output discarded.
	Env            []string
	Dir            string
	Stdin          *os.File
	Stdout, Stderr *os.File
	// Log gets diagnostics. Optional.
	Log *slog.Logger
}

// Tracer traces the copies of one program. It reaps every child of the process it runs in
// (wait4(-1)): start nothing else in that process while it runs.
type Tracer struct {
	opts    Options
	arch    lockcall.Arch
	handler func(Event)
	done    chan struct{}
	err     error
	mu      sync.Mutex
	procs   map[int]*proc // by tgid
	threads map[int]*thread
	roots   []int
	started chan error
}

type proc struct {
	pid, ppid, copy int
	threads         int
	status, signal  string
	exited          bool
	// started: its ProcStart went out (a copy's at its exec into the program, a fork's at
	// the fork).
	started bool
}

type thread struct {
	tid, pid int
	inCall   bool
	call     lockcall.Call
	fresh    bool // auto-attached, its first SIGSTOP not seen yet
}

// Start starts the copies and traces them on a thread of its own; handler is called on that
// thread for every event, in order. Cancelling ctx kills every tracee.
func Start(ctx context.Context, opts Options, handler func(Event)) (*Tracer, error) {
	if opts.Program == "" || len(opts.Helper) == 0 {
		return nil, errors.New("ptracer: Program and Helper are required")
	}
	arch, err := lockcall.Native()
	if err != nil {
		return nil, err
	}
	if opts.Copies <= 0 {
		opts.Copies = 1
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	t := &Tracer{opts: opts, arch: arch, handler: handler, done: make(chan struct{}),
		procs: map[int]*proc{}, threads: map[int]*thread{}, started: make(chan error, 1)}
	go t.run()
	if err := <-t.started; err != nil {
		<-t.done
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			t.Kill()
		case <-t.done:
		}
	}()
	return t, nil
}

// Wait blocks until every traced process has ended and returns the tracer's error, if any.
func (t *Tracer) Wait() error {
	<-t.done
	return t.err
}

// Done is closed when every traced process has ended.
func (t *Tracer) Done() <-chan struct{} { return t.done }

// Roots returns the pids of the copies started.
func (t *Tracer) Roots() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]int(nil), t.roots...)
}

// Kill sends SIGKILL to every traced process. It may be called from any goroutine.
func (t *Tracer) Kill() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid, p := range t.procs {
		if !p.exited {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// run is the tracer thread: ptrace requests must all come from the thread that is the
// tracer: the thread that seized the copies (and so inherits their children).
func (t *Tracer) run() {
	runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
	defer close(t.done)
	if err := t.startCopies(); err != nil {
		t.Kill()
		t.drain()
		t.started <- err
		return
	}
	t.started <- nil
	t.err = t.loop()
}

const traceOptions = unix.PTRACE_O_TRACESYSGOOD | unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACEVFORK |
	unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEEXEC | unix.PTRACE_O_TRACESECCOMP | unix.PTRACE_O_EXITKILL

func (t *Tracer) startCopies() error {
	o := t.opts
	for i := range o.Copies {
		// HELPER-ARGS... PATH ARGV0 ARGS...: the path to exec, then the program's own argv.
		argv := append(append([]string{}, o.Helper[1:]...), o.Program, o.Program)
		argv = append(argv, o.Args...)
		cmd := exec.Command(o.Helper[0], argv...)
		cmd.Env, cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Env, o.Dir, o.Stdin, o.Stdout, o.Stderr
		// The child stops itself (SIGSTOP) before anything else; the tracer seizes it there
		// (PTRACE_SEIZE, not TRACEME: only a seized tracee can be left in a job-control stop
		// with PTRACE_LISTEN) and continues it. Pdeathsig: belt and braces beside EXITKILL for
		// the child that is not seized yet.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("ptracer: start %s: %w", o.Program, err)
		}
		pid := cmd.Process.Pid
		_ = cmd.Process.Release() // the tracer reaps it with wait4
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL|unix.WUNTRACED, nil); err != nil {
			return fmt.Errorf("ptracer: wait for %s: %w", o.Program, err)
		}
		if !ws.Stopped() {
			return fmt.Errorf("ptracer: %s did not stop before its exec (%v)", o.Program, ws)
		}
		t.mu.Lock()
		t.procs[pid] = &proc{pid: pid, copy: i, threads: 1}
		t.threads[pid] = &thread{tid: pid, pid: pid}
		t.roots = append(t.roots, pid)
		t.mu.Unlock()
		if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, traceOptions, 0, 0); e != 0 {
			return fmt.Errorf("ptracer: seize %d: %w", pid, e)
		}
		if err := unix.Kill(pid, unix.SIGCONT); err != nil {
			return fmt.Errorf("ptracer: continue %d: %w", pid, err)
		}
	}
	return nil
}

// drain reaps what is left after a failed start.
func (t *Tracer) drain() {
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, unix.WALL, nil); err != nil {
			return
		}
	}
}

func (t *Tracer) live() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.threads) > 0
}

func (t *Tracer) loop() error {
	for t.live() {
		var ws unix.WaitStatus
		tid, err := unix.Wait4(-1, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ECHILD {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ptracer: wait4: %w", err)
		}
		now := time.Now()
		if ws.Exited() || ws.Signaled() {
			t.threadExit(tid, ws, now)
			continue
		}
		if !ws.Stopped() {
			continue
		}
		t.stopped(tid, ws, now)
	}
	return nil
}

func (t *Tracer) thread(tid int) *thread {
	t.mu.Lock()
	defer t.mu.Unlock()
	th := t.threads[tid]
	if th == nil {
		// A new thread or process can report its first stop before its parent's clone event.
		th = &thread{tid: tid, pid: tgidOf(tid), fresh: true}
		t.threads[tid] = th
		t.addThread(th)
	}
	return th
}

// addThread counts a thread in its process, creating the process record; mu is held.
func (t *Tracer) addThread(th *thread) *proc {
	p := t.procs[th.pid]
	if p == nil {
		p = &proc{pid: th.pid}
		t.procs[th.pid] = p
	}
	p.threads++
	return p
}

func (t *Tracer) stopped(tid int, ws unix.WaitStatus, now time.Time) {
	th := t.thread(tid)
	sig := ws.StopSignal()
	switch {
	case int(ws)>>16 == unix.PTRACE_EVENT_STOP:
		// A seized tracee's stop of its own: a job-control stop (the stopping signal) is kept
		// with PTRACE_LISTEN — the program stays stopped, as it would untraced, until a SIGCONT,
		// which brings another such stop with SIGTRAP; that one, and a new child's first stop,
		// are continued.
		th.fresh = false
		switch sig {
		case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
			if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_LISTEN, uintptr(tid), 0, 0, 0, 0); e != 0 && e != unix.ESRCH {
				t.opts.Log.Debug("ptrace listen", "tid", tid, "err", e)
			}
		default:
			t.cont(tid, 0)
		}
	case sig == unix.SIGTRAP|0x80:
		t.syscallStop(th, now)
	case sig == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_SECCOMP:
		t.seccompStop(th, now)
	case sig == unix.SIGTRAP && ws.TrapCause() > 0:
		t.ptraceEvent(th, ws.TrapCause(), now)
	case sig == unix.SIGSTOP && th.fresh:
		th.fresh = false
		t.cont(tid, 0)
	default:
		// A signal for the tracee: deliver it (a stopping signal then brings the group-stop
		// above).
		if sig == unix.SIGTRAP {
			sig = 0 // a stray trap from our own exec handling
		}
		t.cont(tid, int(sig))
	}
}

func (t *Tracer) cont(tid, sig int) {
	if err := unix.PtraceCont(tid, sig); err != nil && err != unix.ESRCH {
		t.opts.Log.Debug("ptrace cont", "tid", tid, "err", err)
	}
}

// seccompStop: the thread is at the entry of a filtered call.
func (t *Tracer) seccompStop(th *thread, now time.Time) {
	nr, args, _, err := regs(th.tid)
	if err != nil {
		t.cont(th.tid, 0)
		return
	}
	c, ok := lockcall.Decode(t.arch, nr, args)
	if !ok {
		t.cont(th.tid, 0)
		return
	}
	if c.Addr != 0 && !c.HaveFlock {
		if b, err := readMem(th.tid, c.Addr, lockcall.FlockSize); err == nil {
			if err := c.SetFlock(b); err != nil {
				t.opts.Log.Debug("struct flock", "tid", th.tid, "err", err)
			}
		}
	}
	t.handler(Event{Kind: CallEnter, At: now, PID: th.pid, TID: th.tid, Copy: t.copyOf(th.pid), Call: c})
	if !NeedsReturn(c) {
		t.cont(th.tid, 0)
		return
	}
	th.inCall, th.call = true, c
	// PTRACE_SYSCALL after a seccomp stop stops again at the call's exit (Linux >= 4.8).
	if err := unix.PtraceSyscall(th.tid, 0); err != nil && err != unix.ESRCH {
		t.opts.Log.Debug("ptrace syscall", "tid", th.tid, "err", err)
	}
}

// NeedsReturn says whether a call's return matters to a recorder: a lock request's outcome
// and F_GETLK's answer do; an unlock or a close does its work as it is entered (the hold ends
// there), so the tracer lets it run to its end without a second stop.
func NeedsReturn(c lockcall.Call) bool {
	return c.Op == lockcall.OpLock || c.Op == lockcall.OpGetlk
}

// Kernel-internal errnos a call returns when a signal interrupted it and it will be restarted.
const (
	errRestartSys     = 512
	errRestartNoIntr  = 513
	errRestartNoHand  = 514
	errRestartBlockng = 516
)

func (t *Tracer) syscallStop(th *thread, now time.Time) {
	if !th.inCall {
		t.cont(th.tid, 0)
		return
	}
	th.inCall = false
	_, _, ret, err := regs(th.tid)
	c := th.call
	ev := Event{Kind: CallReturn, At: now, PID: th.pid, TID: th.tid, Copy: t.copyOf(th.pid), Call: c, Ret: ret}
	if err == nil {
		if ret < 0 && ret > -4096 {
			ev.Errno = syscall.Errno(-ret)
			switch -ret {
			case errRestartSys, errRestartNoIntr, errRestartNoHand, errRestartBlockng:
				ev.Restart = true
				ev.Errno = unix.EINTR
			}
		}
		if c.Op == lockcall.OpGetlk && ev.Errno == 0 && c.Addr != 0 {
			if b, err := readMem(th.tid, c.Addr, lockcall.FlockSize); err == nil {
				_ = ev.Call.SetFlock(b)
			}
		}
	}
	t.handler(ev)
	t.cont(th.tid, 0)
}

func (t *Tracer) ptraceEvent(th *thread, cause int, now time.Time) {
	switch cause {
	case unix.PTRACE_EVENT_FORK, unix.PTRACE_EVENT_VFORK, unix.PTRACE_EVENT_CLONE:
		msg, err := unix.PtraceGetEventMsg(th.tid)
		if err == nil {
			child := int(msg)
			// fork and vfork make a process; clone makes a thread unless CLONE_THREAD was
			// not given, which /proc tells.
			isThread := cause == unix.PTRACE_EVENT_CLONE && tgidOf(child) == th.pid
			t.mu.Lock()
			nt := t.threads[child]
			if nt == nil {
				nt = &thread{tid: child, pid: child, fresh: true}
				if isThread {
					nt.pid = th.pid
				}
				t.threads[child] = nt
				t.addThread(nt)
			}
			var p *proc
			if !isThread {
				p = t.procs[child]
				p.ppid, p.copy, p.started = th.pid, t.procs[th.pid].copy, true
			}
			t.mu.Unlock()
			if p != nil {
				t.handler(Event{Kind: ProcStart, At: now, PID: child, TID: child, PPID: th.pid, Copy: p.copy, Argv: cmdline(child)})
			}
		}
	case unix.PTRACE_EVENT_EXEC:
		// A non-leader thread that execs takes over the leader's id; the kernel reports the
		// old id in the event message and that thread is gone.
		if msg, err := unix.PtraceGetEventMsg(th.tid); err == nil && int(msg) != th.tid {
			t.mu.Lock()
			if old := t.threads[int(msg)]; old != nil {
				delete(t.threads, int(msg))
				t.procs[old.pid].threads--
			}
			t.mu.Unlock()
		}
		t.mu.Lock()
		p := t.procs[th.pid]
		first := p != nil && !p.started
		if first {
			p.started = true
		}
		t.mu.Unlock()
		argv := cmdline(th.pid)
		if first {
			// The helper became the program: this is where the copy starts.
			t.handler(Event{Kind: ProcStart, At: now, PID: th.pid, TID: th.pid, Copy: p.copy, Argv: argv})
		} else {
			t.handler(Event{Kind: ProcExec, At: now, PID: th.pid, TID: th.pid, Copy: t.copyOf(th.pid), Argv: argv})
		}
	}
	t.cont(th.tid, 0)
}

func (t *Tracer) copyOf(pid int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.procs[pid]; p != nil {
		return p.copy
	}
	return 0
}

func (t *Tracer) threadExit(tid int, ws unix.WaitStatus, now time.Time) {
	t.mu.Lock()
	th := t.threads[tid]
	if th == nil {
		t.mu.Unlock()
		return
	}
	delete(t.threads, tid)
	p := t.procs[th.pid]
	p.threads--
	if tid == th.pid || p.status == "" {
		p.status, p.signal = statusText(ws)
	}
	ended := p.threads <= 0 && !p.exited
	if ended {
		p.exited = true
	}
	t.mu.Unlock()
	if th.inCall {
		// Killed inside a call: it never returned.
		th.inCall = false
	}
	if ended {
		t.handler(Event{Kind: ProcExit, At: now, PID: p.pid, TID: p.pid, Copy: p.copy, Status: p.status, Signal: p.signal})
	}
}

func statusText(ws unix.WaitStatus) (status, signal string) {
	if ws.Signaled() {
		s := ws.Signal()
		return "signal: " + s.String(), unix.SignalName(s)
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus()), ""
}

// tgidOf reads a thread's thread group from /proc; a thread that is gone is its own group.
func tgidOf(tid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return tid
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return n
			}
		}
	}
	return tid
}

// cmdline reads a process's argv.
func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// readMem reads n bytes at addr of a stopped tracee.
func readMem(tid int, addr uint64, n int) ([]byte, error) {
	b := make([]byte, n)
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(n)
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: n}}
	got, err := unix.ProcessVMReadv(tid, local, remote, 0)
	if err == nil && got == n {
		return b, nil
	}
	// process_vm_readv can be refused where ptrace peeks are not (some seccomp profiles).
	if m, perr := unix.PtracePeekData(tid, uintptr(addr), b); perr == nil && m == n {
		return b, nil
	}
	if err == nil {
		err = fmt.Errorf("short read: %d of %d bytes", got, n)
	}
	return nil, fmt.Errorf("ptracer: read %d bytes at %#x of %d: %w", n, addr, tid, err)
}
