//go:build !lockeronly

package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/ebpftracer"
	"github.com/lockprobe/lockprobe/sampler"
	"github.com/lockprobe/lockprobe/tracefile"
)

func watchCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	var files, pids stringList
	fs.Var(&files, "file", "a file to watch (repeatable)")
	fs.Var(&pids, "pid", "look only at this process (repeatable; default: every process with a -file open)")
	forD := fs.Duration("for", 10*time.Second, "how long to watch; 0 is one look")
	every := fs.Duration("every", 200*time.Millisecond, "time between looks")
	out := fs.String("out", "", "output folder (default: a new lockprobe-out-TIMESTAMP folder here)")
	tracer := fs.String("tracer", "auto", "also trace the watched processes' lock calls: ebpf (root and kernel BTF; sees every F_SETLK try of a poller), none (looks only), auto (ebpf where it can run)")
	stuckAfter := fs.Duration("stuck-after", analysis.DefaultStuckAfter, "a waiter blocked this long under suspicious evidence is reported stuck (any time, when watching for less)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if len(files) == 0 {
		return usagef("-file is required: the file the processes share")
	}
	if *forD < 0 || *every <= 0 || *stuckAfter <= 0 {
		return usagef("-for must not be negative; -every and -stuck-after must be positive")
	}
	var useEBPF bool
	switch *tracer {
	case "auto":
		useEBPF = ebpftracer.Available() == nil
	case "ebpf":
		if err := ebpftracer.Available(); err != nil {
			return usagef("-tracer ebpf: %v; -tracer none needs neither", err)
		}
		useEBPF = true
	case "none":
	default:
		return usagef("-tracer %q: want auto, ebpf or none", *tracer)
	}
	pidList, err := parsePIDs(pids)
	if err != nil {
		return err
	}
	fl, err := openWatched(files)
	if err != nil {
		return err
	}
	defer sampler.CloseFiles(fl)
	// Check the pids before anything is written: gone or not ours is bad input.
	if _, err := sampler.Take(fl, pidList); err != nil {
		if errors.Is(err, sampler.ErrGone) || errors.Is(err, sampler.ErrNotYours) {
			return usagef("-pid: %v", err)
		}
		return err
	}
	dir := *out
	if dir == "" {
		dir = defaultOutDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	path, err := sampler.Watch(ctx, sampler.Options{Files: fl, PIDs: pidList, For: *forD, Every: *every, OutDir: dir,
		CommandLine: "lockprobe watch " + shellJoin(args), Version: version, EBPF: useEBPF,
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	t, err := tracefile.Open(path)
	if err != nil {
		return err
	}
	ar := analysis.Analyze(t, analysis.Options{StuckAfter: *stuckAfter, Settle: *every, Immediate: *forD < *stuckAfter})
	if err := writeReports(ar, reportOptions{outDir: dir, endReason: "done"}, stdout); err != nil {
		return err
	}
	if ar.Verdict.Exit != 0 {
		return &exitError{code: ar.Verdict.Exit}
	}
	return nil
}

func whoCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("who", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, reorder(args), stderr); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("want FILE: lockprobe who FILE [-json]")
	}
	fl, err := openWatched(fs.Args())
	if err != nil {
		return err
	}
	defer sampler.CloseFiles(fl)
	l, err := sampler.Take(fl, nil)
	if err != nil {
		return err
	}
	var views []sampler.WhoView
	for _, f := range fl {
		views = append(views, sampler.Who(l, f))
	}
	if *asJSON {
		return sampler.WriteJSON(stdout, views)
	}
	return sampler.WriteText(stdout, views)
}

// reorder puts flags before the file arguments, so that `who FILE -json` works.
func reorder(args []string) []string {
	var flags, rest []string
	for _, a := range args {
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
		} else {
			rest = append(rest, a)
		}
	}
	return append(flags, rest...)
}

func openWatched(paths []string) ([]*sampler.File, error) {
	var abs []string
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, usagef("%s: %v", p, err)
		}
		st, err := os.Stat(a)
		if err != nil {
			return nil, usagef("%s: %v", p, errors.Unwrap(err))
		}
		if !st.Mode().IsRegular() {
			return nil, usagef("%s: not a regular file", p)
		}
		abs = append(abs, a)
	}
	fl, err := sampler.OpenFiles(abs)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return fl, nil
}

func parsePIDs(vals []string) ([]int, error) {
	var out []int
	for _, v := range vals {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, usagef("-pid %q: not a process id", v)
		}
		out = append(out, n)
	}
	return out, nil
}
