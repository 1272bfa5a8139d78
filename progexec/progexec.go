// Package progexec runs an unmodified program — N copies of it, or one that forks — under
// the ptracer, records every lock call of it, its children and threads through a
// progrec.Recorder into a trace file, and ends the run when the program has ended, at the
// timeout, or when its context is cancelled (then it snapshots what still runs, ends the
// spans at that instant and kills the program).
package progexec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/lockprobe/lockprobe/ebpftracer"
	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/progrec"
	"github.com/lockprobe/lockprobe/ptracer"
	"github.com/lockprobe/lockprobe/tracefile"
)

// Tracer is how the program's lock calls are seen.
type Tracer int

// The tracers.
const (
	TracerAuto   Tracer = iota // eBPF where ebpftracer.Available, else ptrace
	TracerPtrace               // ptrace + seccomp: no root needed; two stops per lock request
	TracerEBPF                 // eBPF tracepoints: root and BTF; nothing stops
)

var tracerNames = [...]string{"auto", "ptrace", "ebpf"}

func (t Tracer) String() string {
	if int(t) < len(tracerNames) {
		return tracerNames[t]
	}
	return fmt.Sprintf("tracer(%d)", int(t))
}

// ParseTracer parses a Tracer's name.
func ParseTracer(s string) (Tracer, error) {
	for i, n := range tracerNames {
		if n == s {
			return Tracer(i), nil
		}
	}
	return 0, fmt.Errorf("unknown tracer %q (want auto, ptrace or ebpf)", s)
}

// Options say what to run and where to record it. Program, Helper and OutDir are required.
type Options struct {
	Program string // the program's resolved path
	Args    []string
	// Helper is the argv of the copy's side: a program that runs ChildMain with the
	// arguments that follow (lockprobe's hidden `exec-child`).
	Helper []string
	// Tracer picks the tracer. Optional: TracerAuto.
	Tracer Tracer
	// Copies of the program to start. Optional: 1.
	Copies int
	// OutDir receives the trace file; it is created.
	OutDir string
	// Timeout ends the run (and kills the program) after this long. Optional: no limit.
	Timeout time.Duration
	// Poll is how often blocked requests' owners are looked up. Optional: 100 ms.
	Poll time.Duration
	// CommandLine and Version go into the root span.
	CommandLine, Version string
	// Stdout and Stderr get the program's output. Optional: discarded.
	Stdout, Stderr *os.File
	// Env is the program's environment. Optional: lockprobe's.
	Env []string
	Log *slog.Logger
}

// Result says how the run ended.
type Result struct {
	TracePath string
	// Trace is what was written, merged: the run's analysis reads it instead of the file.
	Trace *tracefile.Trace
	Start time.Time
	End   time.Time
	// EndReason is "done", "timeout" or "interrupted".
	EndReason string
	// Killed lists the processes still running at the end, which were killed.
	Killed []string
	// Tracer is the tracer that ran; Lost counts the events it had no room for (eBPF).
	Tracer Tracer
	Lost   uint64
}

// tracer is what Run needs of ptracer and ebpftracer.
type tracer interface {
	Done() <-chan struct{}
	Wait() error
	Kill()
}

// pick resolves TracerAuto, and refuses eBPF where it cannot run.
func pick(t Tracer) (Tracer, error) {
	avail := ebpftracer.Available()
	switch {
	case t == TracerAuto && avail == nil:
		return TracerEBPF, nil
	case t == TracerAuto:
		return TracerPtrace, nil
	case t == TracerEBPF && avail != nil:
		return t, avail
	}
	return t, nil
}

func start(kind Tracer, o Options, env []string, h func(ptracer.Event)) (tracer, error) {
	if kind == TracerEBPF {
		return ebpftracer.Start(context.Background(), ebpftracer.Options{Program: o.Program, Args: o.Args,
			Helper: append(append([]string{}, o.Helper...), childEBPF), Copies: o.Copies, Env: env, Stdout: o.Stdout,
			Stderr: o.Stderr, Log: o.Log}, h)
	}
	return ptracer.Start(context.Background(), ptracer.Options{Program: o.Program, Args: o.Args,
		Helper: append(append([]string{}, o.Helper...), childPtrace), Copies: o.Copies, Env: env, Stdout: o.Stdout,
		Stderr: o.Stderr, Log: o.Log}, h)
}

// The copy's side of each tracer, as ChildMain's first argument.
const (
	childPtrace = "ptrace"
	childEBPF   = "ebpf"
)

// ChildMain is a copy's side (lockprobe's hidden exec-child): args are the tracer's name, the
// program's path and its argv. For ptrace it installs the seccomp filter and execs; for eBPF it
// waits until the tracer has put its pid in the kernel's map, then execs. It returns only on
// error.
func ChildMain(args []string) error {
	if len(args) < 3 {
		return errors.New("want TRACER PATH ARGV0 [ARGS...]")
	}
	switch args[0] {
	case childPtrace:
		return ptracer.InstallAndExec(args[1], args[2:], os.Environ())
	case childEBPF:
		return ebpftracer.WaitAndExec(args[1], args[2:], os.Environ())
	}
	return fmt.Errorf("unknown tracer %q", args[0])
}

// Run runs the program and records it. A program that cannot be started is an error before
// anything is written.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Copies <= 0 {
		o.Copies = 1
	}
	if err := os.MkdirAll(o.OutDir, 0o700); err != nil {
		return nil, fmt.Errorf("progexec: %w", err)
	}
	kind, err := pick(o.Tracer)
	if err != nil {
		return nil, err
	}
	res := &Result{TracePath: filepath.Join(o.OutDir, tracefile.FileName), Start: time.Now(), Tracer: kind}
	w, err := progrec.Create(res.TracePath, progrec.RunInfo{Command: o.CommandLine, Scenario: "exec: " + filepath.Base(o.Program),
		Procs: o.Copies, Timeout: o.Timeout, Poll: o.Poll, Version: o.Version, Tracer: kind.String()}, res.Start)
	if err != nil {
		return nil, fmt.Errorf("progexec: %w", err)
	}
	rec := progrec.NewRecorder(w, progrec.Options{Poll: o.Poll, Log: o.Log, Async: kind == TracerEBPF})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.Timeout > 0 {
		var c2 context.CancelFunc
		runCtx, c2 = context.WithTimeout(runCtx, o.Timeout)
		defer c2()
	}
	env := o.Env
	if env == nil {
		env = os.Environ()
	}
	// The tracer's own context is not runCtx: at the end the spans are ended first, then the
	// program is killed, so that the kill does not show as the program's own exits.
	tr, err := start(kind, o, env, handler(rec))
	if err != nil {
		_ = w.Close(time.Now(), "error")
		return nil, fmt.Errorf("progexec: %w", err)
	}
	go rec.Watch(runCtx)
	select {
	case <-tr.Done():
		res.EndReason = "done"
	case <-runCtx.Done():
		res.EndReason = "timeout"
		if errors.Is(ctx.Err(), context.Canceled) {
			res.EndReason = "interrupted"
		}
	}
	res.End = time.Now()
	if res.EndReason != "done" {
		procs := rec.Procs()
		files := progrec.Files{}
		for _, p := range procs {
			res.Killed = append(res.Killed, fmt.Sprintf("pid %d (%s)", p.PID, p.CommandLine()))
			for _, op := range openFiles(p.PID) {
				files[op.File] = op.Path
			}
		}
		w.TakeSnapshot(res.End, procs, files)
		w.SetKilled(res.Killed)
	}
	rec.End(res.End)
	tr.Kill()
	select {
	case <-tr.Done():
	case <-time.After(10 * time.Second):
		o.Log.Warn("traced processes did not end after SIGKILL")
	}
	if err := tr.Wait(); err != nil {
		o.Log.Warn("tracer", "err", err)
	}
	if et, ok := tr.(*ebpftracer.Tracer); ok {
		if res.Lost = et.Lost(); res.Lost > 0 {
			o.Log.Warn("eBPF ring buffer full: lock calls lost", "events", res.Lost)
		}
		w.SetLost(int64(res.Lost))
		et.Close()
	}
	if err := w.Close(res.End, res.EndReason); err != nil {
		return res, fmt.Errorf("progexec: %w", err)
	}
	if res.Trace, err = w.Trace(); err != nil {
		return res, fmt.Errorf("progexec: %w", err)
	}
	return res, nil
}

// handler hands the tracer's events to the recorder.
func handler(rec *progrec.Recorder) func(ptracer.Event) {
	return func(e ptracer.Event) {
		switch e.Kind {
		case ptracer.ProcStart:
			rec.ProcStart(e.At, e.PID, e.PPID, e.Argv)
		case ptracer.ProcExec:
			rec.ProcExec(e.At, e.PID, e.Argv)
		case ptracer.CallEnter:
			rec.Enter(e.At, e.PID, e.TID, e.Call, e.Desc)
		case ptracer.CallReturn:
			rec.Return(e.At, e.PID, e.TID, e.Call, e.Errno, e.Restart)
		case ptracer.ProcExit:
			rec.ProcExit(e.At, e.PID, e.Status, e.Signal)
		}
	}
}

// openFiles lists the regular files process pid has open that carry locks in /proc/locks.
func openFiles(pid int) []host.Opener {
	entries, err := host.ReadLocks()
	if err != nil {
		return nil
	}
	var ids []host.FileID
	for _, e := range entries {
		ids = append(ids, e.File())
	}
	ops, _ := host.OpenersOf([]int{pid}, ids)
	return ops
}
