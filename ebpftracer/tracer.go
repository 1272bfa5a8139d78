// Package ebpftracer records the lock calls of a process tree with eBPF, without stopping it:
// programs on the syscall tracepoints of fcntl, flock, close, dup2, dup3 and close_range and on
// sched_process_fork/exec/exit, filtered in the kernel to the traced tree (a hash map of thread
// groups that forks add themselves to), read each call's struct flock with
// bpf_probe_read_user and the descriptor's open file (device, inode, size, offset, the struct
// file itself as the open file description's identity, its reference count) from the kernel,
// and send fixed-size events through a ring buffer. It delivers the same ptracer.Events as the
// ptrace tracer, with Event.Desc set, so the same progrec.Recorder turns them into spans.
//
// It needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN), the kernel's BTF
// (/sys/kernel/btf/vmlinux: the structure offsets are read from it) and tracefs; Available says
// whether this machine has them. It can start a program (copies gated until their pids are in
// the map) or attach to processes that already run (Options.Attach), which it never stops.
package ebpftracer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/lockcall"
	"github.com/lockprobe/lockprobe/ptracer"
)

// Options say what to trace: a program to start (Program, Helper) or processes to attach to
// (Attach).
type Options struct {
	// Program is the program's resolved path, Args its argv[1:].
	Program string
	Args    []string
	// Helper is the argv that starts a copy: a program that calls WaitAndExec(path, argv, env)
	// with what follows its own arguments (lockprobe's hidden `exec-child -gate`).
	Helper []string
	// Copies of the program to start. Optional: 1.
	Copies int
	// Attach traces these running processes (and what they fork from now on) instead.
	Attach []int
	// Env, Dir, Stdin, Stdout, Stderr are the program's. Optional: lockprobe's environment and
	// folder, no input, output discarded.
	Env            []string
	Dir            string
	Stdin          *os.File
	Stdout, Stderr *os.File
	// Log gets diagnostics. Optional.
	Log *slog.Logger
}

// ErrUnavailable wraps every reason this machine cannot run the tracer.
var ErrUnavailable = errors.New("eBPF tracing unavailable")

// Available says whether eBPF tracing can run here: root, the kernel's BTF, tracefs.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (CAP_BPF, CAP_PERFMON)", ErrUnavailable)
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("%w: no kernel BTF (/sys/kernel/btf/vmlinux)", ErrUnavailable)
	}
	if _, err := tracefs(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// tracefs returns the tracefs mount point, mounting it when the kernel has it but nobody
// mounted it.
func tracefs() (string, error) {
	for _, d := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(d + "/events/syscalls"); err == nil {
			return d, nil
		}
	}
	if err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); err == nil {
		return "/sys/kernel/tracing", nil
	}
	return "", errors.New("no tracefs with syscall tracepoints")
}

// Tracer traces one process tree.
type Tracer struct {
	opts    Options
	arch    lockcall.Arch
	handler func(ptracer.Event)
	o       offsets
	m       maps
	links   []link.Link
	coll    *ebpf.Collection
	rd      *ringbuf.Reader
	clock   int64 // realtime − monotonic, ns
	done    chan struct{}
	err     error

	mu      sync.Mutex
	procs   map[int]*proc
	parents map[int]int         // forked pid → parent's thread group
	calls   map[int]pendingCall // by thread: the call in flight, for its return
	roots   []int
	cmds    []*exec.Cmd
	killed  bool
}

type pendingCall struct {
	c    lockcall.Call
	desc *lockcall.Desc
}

type proc struct {
	pid, copy int
	exited    bool
	announced bool // its ProcStart went out
	argv      []string
}

// Start loads the programs, starts the copies (or attaches) and delivers events to handler on
// a goroutine of its own, in the order the kernel wrote them. Cancelling ctx kills the copies.
func Start(ctx context.Context, opts Options, handler func(ptracer.Event)) (*Tracer, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if len(opts.Attach) == 0 && (opts.Program == "" || len(opts.Helper) == 0) {
		return nil, errors.New("ebpftracer: Program and Helper, or Attach, are required")
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
		procs: map[int]*proc{}, parents: map[int]int{}, calls: map[int]pendingCall{}}
	if err := t.load(); err != nil {
		t.close()
		return nil, err
	}
	var rt, mt unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mt)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &rt)
	t.clock = rt.Nano() - mt.Nano()
	if len(opts.Attach) > 0 {
		for _, pid := range opts.Attach {
			if err := t.m.pids.Put(uint32(pid), uint32(1)); err != nil {
				t.close()
				return nil, fmt.Errorf("ebpftracer: trace pid %d: %w", pid, err)
			}
			t.procOf(pid, time.Now())
		}
	} else if err := t.startCopies(); err != nil {
		t.Kill()
		t.close()
		return nil, err
	}
	go t.read()
	go func() {
		select {
		case <-ctx.Done():
			t.Kill()
		case <-t.done:
		}
	}()
	return t, nil
}

func (t *Tracer) load() error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("%w: kernel BTF: %v", ErrUnavailable, err)
	}
	if t.o, err = kernelOffsets(spec); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	dir, err := tracefs()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	forkChild, err := fieldOffset(dir, "sched/sched_process_fork", "child_pid")
	if err != nil {
		return err
	}
	groupDead, err := fieldOffset(dir, "sched/sched_process_exit", "group_dead")
	if err != nil {
		return err
	}
	type tp struct {
		group, name string
		build       func(*builder)
	}
	tps := []tp{
		{"syscalls", "sys_enter_fcntl", (*builder).fcntlEnter},
		{"syscalls", "sys_exit_fcntl", func(b *builder) { b.syscallExit(evFcntlExit) }},
		{"syscalls", "sys_enter_flock", (*builder).flockEnter},
		{"syscalls", "sys_exit_flock", func(b *builder) { b.syscallExit(evFlockExit) }},
		{"syscalls", "sys_enter_close", func(b *builder) { b.fdCall(evClose) }},
		{"syscalls", "sys_enter_dup3", func(b *builder) { b.fdCall(evDup) }},
		{"syscalls", "sys_enter_close_range", func(b *builder) { b.fdCall(evCloseRange) }},
		{"sched", "sched_process_exec", (*builder).procExec},
		{"sched", "sched_process_fork", func(b *builder) { b.procFork(forkChild) }},
		{"sched", "sched_process_exit", func(b *builder) { b.procExit(groupDead) }},
	}
	if t.arch.Dup2 >= 0 {
		tps = append(tps, tp{"syscalls", "sys_enter_dup2", func(b *builder) { b.fdCall(evDup) }})
	}
	cs := &ebpf.CollectionSpec{Maps: mapSpecs(), Programs: map[string]*ebpf.ProgramSpec{}}
	for _, x := range tps {
		b := &builder{o: t.o}
		x.build(b)
		cs.Programs[x.name] = &ebpf.ProgramSpec{Name: "lp_" + strings.TrimPrefix(x.name, "sys_"), Type: ebpf.TracePoint,
			Instructions: b.ins, License: license}
	}
	coll, err := ebpf.NewCollection(cs)
	if err != nil {
		return fmt.Errorf("%w: load the programs: %v", ErrUnavailable, err)
	}
	t.coll = coll
	t.m = maps{pids: coll.Maps[mapPids], inflight: coll.Maps[mapInflight], events: coll.Maps[mapEvents], lost: coll.Maps[mapLost]}
	for _, x := range tps {
		l, err := link.Tracepoint(x.group, x.name, coll.Programs[x.name], nil)
		if err != nil {
			return fmt.Errorf("%w: attach to %s/%s: %v", ErrUnavailable, x.group, x.name, err)
		}
		t.links = append(t.links, l)
	}
	t.rd, err = ringbuf.NewReader(t.m.events)
	if err != nil {
		return fmt.Errorf("%w: ring buffer: %v", ErrUnavailable, err)
	}
	return nil
}

// fieldOffset reads a tracepoint record field's offset from its format file: the layout of
// the sched records changed between kernels.
func fieldOffset(dir, event, field string) (int16, error) {
	b, err := os.ReadFile(dir + "/events/" + event + "/format")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		decl, rest, ok := strings.Cut(strings.TrimSpace(line), ";")
		if !ok || !strings.HasPrefix(decl, "field:") || !strings.HasSuffix(decl, " "+field) {
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(rest), "offset:"); ok {
			v, _, _ = strings.Cut(v, ";")
			n, err := strconv.Atoi(v)
			return int16(n), err
		}
	}
	return 0, fmt.Errorf("%w: tracepoint %s has no field %s", ErrUnavailable, event, field)
}

// startCopies starts the copies, each blocked on a pipe (WaitAndExec) until its pid is in the
// map: no lock call of it escapes.
func (t *Tracer) startCopies() error {
	o := t.opts
	for i := range o.Copies {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		argv := append(append([]string{}, o.Helper[1:]...), o.Program, o.Program)
		argv = append(argv, o.Args...)
		cmd := exec.Command(o.Helper[0], argv...)
		cmd.Env, cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Env, o.Dir, o.Stdin, o.Stdout, o.Stderr
		cmd.ExtraFiles = []*os.File{r} // fd 3
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		r.Close()
		if err != nil {
			w.Close()
			return fmt.Errorf("ebpftracer: start %s: %w", o.Program, err)
		}
		pid := cmd.Process.Pid
		t.mu.Lock()
		t.cmds = append(t.cmds, cmd)
		t.roots = append(t.roots, pid)
		t.procs[pid] = &proc{pid: pid, copy: i}
		t.mu.Unlock()
		if err := t.m.pids.Put(uint32(pid), uint32(1)); err != nil {
			w.Close()
			return fmt.Errorf("ebpftracer: trace pid %d: %w", pid, err)
		}
		_, err = w.Write([]byte{1})
		w.Close()
		if err != nil {
			return fmt.Errorf("ebpftracer: release copy %d: %w", i, err)
		}
		go func() { _ = cmd.Wait() }() // the exit itself comes from sched_process_exit
	}
	return nil
}

// WaitAndExec is a copy's side: it waits until the tracer has put its pid in the map (a byte
// on descriptor 3), then becomes the program. It returns only on error.
func WaitAndExec(path string, argv, env []string) error {
	gate := os.NewFile(3, "gate")
	var b [1]byte
	if _, err := gate.Read(b[:]); err != nil {
		return fmt.Errorf("ebpftracer: the tracer went away before releasing the program: %w", err)
	}
	gate.Close()
	if err := unix.Exec(path, argv, env); err != nil {
		return fmt.Errorf("ebpftracer: exec %s: %w", path, err)
	}
	return nil
}

// Roots returns the pids of the copies started.
func (t *Tracer) Roots() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]int(nil), t.roots...)
}

// Done is closed when every traced process has ended (or the tracer failed).
func (t *Tracer) Done() <-chan struct{} { return t.done }

// Wait blocks until Done and returns the tracer's error.
func (t *Tracer) Wait() error {
	<-t.done
	return t.err
}

// Lost returns how many events the ring buffer had no room for.
func (t *Tracer) Lost() uint64 {
	var n uint64
	if t.m.lost != nil {
		_ = t.m.lost.Lookup(uint32(0), &n)
	}
	return n
}

// Kill sends SIGKILL to every traced process this tracer started; attached processes are
// never touched, and Kill ends their tracing instead.
func (t *Tracer) Kill() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.killed = true
	if len(t.opts.Attach) > 0 {
		return // the reader stops at its next poll
	}
	for pid, p := range t.procs {
		if !p.exited {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// Close detaches the programs; call it after Done.
func (t *Tracer) Close() error {
	t.close()
	return nil
}

func (t *Tracer) close() {
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
	if t.rd != nil {
		t.rd.Close()
	}
	if t.coll != nil {
		t.coll.Close()
		t.coll = nil
	}
}

// readEvery is how often the reader looks into the ring buffer: the programs wake it only
// when a lot is waiting (wakeAt).
const readEvery = 10 * time.Millisecond

// read decodes the ring buffer until every traced process has ended.
func (t *Tracer) read() {
	defer close(t.done)
	var rec ringbuf.Record
	for {
		// Every process has ended (or an attached watch is over): what the ring still holds
		// was written before; read it and stop.
		last := t.empty() || t.isKilledAttach()
		wait := readEvery
		if last {
			wait = 0
		}
		t.rd.SetDeadline(time.Now().Add(wait))
		for {
			err := t.rd.ReadInto(&rec)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				if !errors.Is(err, ringbuf.ErrClosed) {
					t.err = fmt.Errorf("ebpftracer: read events: %w", err)
				}
				return
			}
			if len(rec.RawSample) >= eventSize {
				t.event(rec.RawSample)
			}
		}
		if last {
			return
		}
	}
}

func (t *Tracer) isKilledAttach() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.killed && len(t.opts.Attach) > 0
}

// empty says the pids map holds no process: every traced process has ended.
func (t *Tracer) empty() bool {
	var k uint32
	err := t.m.pids.NextKey(nil, &k)
	return errors.Is(err, ebpf.ErrKeyNotExist)
}

// procOf returns the process record of a thread group, announcing it (ProcStart) at its first
// event: a copy after its exec (with the program's command line, not the helper's), a fork at
// its first call.
func (t *Tracer) procOf(pid int, at time.Time) (p *proc, announced bool) {
	t.mu.Lock()
	p = t.procs[pid]
	if p == nil {
		p = &proc{pid: pid}
		if pp := t.procs[t.parents[pid]]; pp != nil {
			p.copy = pp.copy
		}
		t.procs[pid] = p
	}
	announce := !p.announced
	p.announced = true
	ppid := t.parents[pid]
	t.mu.Unlock()
	if announce {
		if ppid == 0 && len(t.opts.Attach) == 0 && !t.isRoot(pid) {
			ppid = parentOf(pid)
		}
		t.handler(ptracer.Event{Kind: ptracer.ProcStart, At: at, PID: pid, TID: pid, PPID: ppid, Copy: p.copy, Argv: t.argvOf(p, ppid)})
	}
	return p, announce
}

// argvOf reads a process's command line. Events are handled after the fact and a short-lived
// process may be gone by then: a copy's is the program's, a fork's its parent's (the same until
// it execs).
func (t *Tracer) argvOf(p *proc, ppid int) []string {
	argv := cmdline(p.pid)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(argv) == 0 {
		switch pp := t.procs[ppid]; {
		case t.isRootLocked(p.pid):
			argv = append([]string{t.opts.Program}, t.opts.Args...)
		case pp != nil:
			argv = pp.argv
		}
	}
	p.argv = argv
	return argv
}

func (t *Tracer) isRoot(pid int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.isRootLocked(pid)
}

func (t *Tracer) isRootLocked(pid int) bool {
	for _, r := range t.roots {
		if r == pid {
			return true
		}
	}
	return false
}

// event decodes one ring buffer record.
func (t *Tracer) event(b []byte) {
	le := binary.LittleEndian
	at := time.Unix(0, int64(le.Uint64(b[offTS:]))+t.clock)
	tid := int(le.Uint32(b[offTID:]))
	pid := int(le.Uint32(b[offTGID:]))
	kind := le.Uint32(b[offKind:])
	fd := int32(le.Uint32(b[offFD:]))
	arg := le.Uint64(b[offArg:])
	addr := le.Uint64(b[offAddr:])
	ret := int64(le.Uint64(b[offRet:]))
	flags := le.Uint32(b[offFlags:])
	var desc *lockcall.Desc
	if flags&flagFile != 0 {
		dev := le.Uint32(b[offDev:])
		desc = &lockcall.Desc{Major: dev >> 20, Minor: dev & (1<<20 - 1), Ino: le.Uint64(b[offIno:]),
			Size: int64(le.Uint64(b[offSize:])), Pos: int64(le.Uint64(b[offPos:])), OFD: le.Uint64(b[offFile:]),
			Refs: int64(le.Uint64(b[offRefs:]))}
		if t.o.refIsFileRef {
			desc.Refs++ // file_ref_t counts from 0 for one reference
		}
	}
	if kind == evFork {
		child := int(arg)
		t.mu.Lock()
		t.parents[child] = pid
		t.mu.Unlock()
		// A new process (not a thread) is announced now: it shares the parent's open file
		// descriptions, and the recorder must know it before the parent's exit.
		if parentOf(child) == pid && tgidOf(child) == child {
			t.procOf(child, at)
		}
		return
	}
	p, fresh := t.procOf(pid, at)
	ev := ptracer.Event{At: at, PID: pid, TID: tid, Copy: p.copy, Desc: desc}
	switch kind {
	case evFcntlEnter, evFlockEnter, evClose, evDup, evCloseRange:
		nr := map[uint32]int64{evFcntlEnter: t.arch.Fcntl, evFlockEnter: t.arch.Flock, evClose: t.arch.Close,
			evDup: t.arch.Dup3, evCloseRange: t.arch.CloseRange}[kind]
		c, ok := lockcall.Decode(t.arch, nr, [6]uint64{uint64(uint32(fd)), arg, addr})
		if !ok {
			return
		}
		if flags&flagFlock != 0 {
			if err := c.SetFlock(b[offFlock : offFlock+lockcall.FlockSize]); err != nil {
				t.opts.Log.Debug("struct flock", "pid", pid, "err", err)
			}
		}
		ev.Kind, ev.Call = ptracer.CallEnter, c
		if ptracer.NeedsReturn(c) {
			t.calls[tid] = pendingCall{c, desc}
		}
	case evFcntlExit, evFlockExit:
		pc, ok := t.calls[tid]
		if !ok {
			return
		}
		delete(t.calls, tid)
		c := pc.c
		ev.Kind, ev.Call, ev.Ret, ev.Desc = ptracer.CallReturn, c, ret, pc.desc
		if ret < 0 && ret > -4096 {
			ev.Errno = syscall.Errno(-ret)
			if ev.Errno == 512 || ev.Errno == 513 || ev.Errno == 514 || ev.Errno == 516 {
				ev.Restart, ev.Errno = true, unix.EINTR
			}
		}
		if c.Op == lockcall.OpGetlk && ev.Errno == 0 && flags&flagFlock != 0 {
			_ = ev.Call.SetFlock(b[offFlock : offFlock+lockcall.FlockSize])
		}
	case evExec:
		if fresh {
			return // announced just now, with the new command line
		}
		ev.Kind, ev.Argv = ptracer.ProcExec, t.argvOf(p, 0)
	case evExit:
		t.mu.Lock()
		p.exited = true
		t.mu.Unlock()
		ev.Kind, ev.TID = ptracer.ProcExit, pid
		ev.Status, ev.Signal = statusText(unix.WaitStatus(uint32(ret)))
	default:
		return
	}
	t.handler(ev)
}

func statusText(ws unix.WaitStatus) (status, signal string) {
	if ws.Signaled() {
		s := ws.Signal()
		return "signal: " + s.String(), unix.SignalName(s)
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus()), ""
}

func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func tgidOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
