//go:build !lockeronly

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/ebpftracer"
	"github.com/lockprobe/lockprobe/progexec"
)

// execChildCmd is the traced child's side of exec (not listed): install the seccomp filter,
// then become the program.
func execChildCmd(args []string, stdout, stderr io.Writer) error {
	err := progexec.ChildMain(args)
	fmt.Fprintf(stderr, "lockprobe exec: %v\n", err)
	os.Exit(127)
	return nil
}

func execCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	n := fs.Int("n", 1, "how many copies of the program to start")
	out := fs.String("out", "", "output folder (default: a new lockprobe-out-TIMESTAMP folder here)")
	timeout := fs.Duration("timeout", 0, "kill the program and end the run after this long (default: wait for it)")
	poll := fs.Duration("poll", 100*time.Millisecond, "how often the owners of blocked requests are looked up")
	stuckAfter := fs.Duration("stuck-after", 5*time.Second, "a waiter blocked this long under suspicious evidence is reported stuck")
	verbose := fs.Bool("v", false, "log diagnostics to stderr")
	tracerName := fs.String("tracer", "auto", "how lock calls are seen: ptrace (no root; stops the program at each lock call), ebpf (root and kernel BTF; stops nothing), auto (ebpf where it can run)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	prog := fs.Args()
	if len(prog) == 0 {
		return usagef("want a program to run: lockprobe exec [flags] -- PROGRAM ARGS...")
	}
	if *n < 1 || *n > maxProcs {
		return usagef("-n %d: want 1 to %d copies", *n, maxProcs)
	}
	if *timeout < 0 || *poll <= 0 || *stuckAfter <= 0 {
		return usagef("-timeout must not be negative; -poll and -stuck-after must be positive")
	}
	tracer, err := progexec.ParseTracer(*tracerName)
	if err != nil {
		return usagef("-tracer: %v", err)
	}
	if tracer == progexec.TracerEBPF {
		if err := ebpftracer.Available(); err != nil {
			return usagef("-tracer ebpf: %v; -tracer ptrace needs neither", err)
		}
	}
	path, err := exec.LookPath(prog[0])
	if err != nil {
		return usagef("program %s: %v", prog[0], errors.Unwrap(err))
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find lockprobe's own binary: %w", err)
	}
	dir := *out
	if dir == "" {
		dir = defaultOutDir()
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	res, err := progexec.Run(ctx, progexec.Options{
		Program: path, Args: prog[1:], Helper: []string{self, "exec-child"}, Tracer: tracer, Copies: *n, OutDir: dir,
		Timeout: *timeout, Poll: *poll, CommandLine: "lockprobe exec " + shellJoin(args), Version: version,
		Stdout: os.Stdout, Stderr: os.Stderr,
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		return err
	}
	ar := analysis.Analyze(res.Trace, analysis.Options{StuckAfter: *stuckAfter, Settle: *poll})
	if err := writeReports(ar, reportOptions{outDir: dir, endReason: res.EndReason, killed: res.Killed}, stdout); err != nil {
		return err
	}
	if ar.Verdict.Exit != 0 {
		return &exitError{code: ar.Verdict.Exit}
	}
	return nil
}
