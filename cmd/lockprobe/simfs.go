//go:build !lockeronly

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lockprobe/lockprobe/simfs"
)

// simfsCmd serves a simfs until Ctrl-C or -for, or removes dead mounts with -cleanup.
func simfsCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simfs", flag.ContinueOnError)
	dir := fs.String("mount", "", "the folder that gets the mounts DIR/node0 … DIR/nodeK-1 (must exist)")
	nodes := fs.Int("nodes", 2, "the number of client nodes (mounts)")
	mode := fs.String("mode", "flock", "flock (global locks, flock and fcntl conflict), localflock (node-local) or noflock (ENOSYS)")
	detect := fs.String("detect", "first", "the server's deadlock detection: first (Lustre's: each waiter's first blocker only), all, off")
	var faults stringList
	fs.Var(&faults, "fault", "a fault KIND[:key=value,...] (repeatable): drop-grant, delay-grant:d=D, ghost, evict:node=N,after=D|on=block, no-deadlock-detect, first-blocker-only; keys node=N, after=D, count=N")
	dur := fs.Duration("for", 0, "stop after this long (default: until Ctrl-C)")
	cleanup := fs.Bool("cleanup", false, "only unmount dead simfs mounts under -mount (after a SIGKILL) and exit")
	verbose := fs.Bool("v", false, "log what simfs does on stderr")
	debug := fs.Bool("debug", false, "log every FUSE request on stderr")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *dir == "" {
		return usagef("-mount DIR is required")
	}
	if *cleanup {
		removed, err := simfs.Cleanup(*dir)
		for _, r := range removed {
			fmt.Fprintf(stdout, "removed %s\n", r)
		}
		return err
	}
	opts := simfs.Options{Dir: *dir, Nodes: *nodes, Debug: *debug}
	var err error
	if opts.Mode, err = simfs.ParseMode(*mode); err != nil {
		return usagef("-mode: %v", err)
	}
	if opts.Detect, err = simfs.ParseDetect(*detect); err != nil {
		return usagef("-detect: %v", err)
	}
	for _, spec := range faults {
		f, err := simfs.ParseFault(spec)
		if err != nil {
			return usagef("-fault: %v", err)
		}
		opts.Faults = append(opts.Faults, f)
	}
	if *dur < 0 {
		return usagef("-for %s: want a duration above 0", *dur)
	}
	if err := opts.Check(); err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "simfs: "))
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	opts.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	f, err := simfs.Start(opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "simfs: mode %s, detect %s, %d faults; serving %s (lock table: %s)\n",
		opts.Mode, opts.Detect, len(opts.Faults), strings.Join(f.Mounts(), " "), f.Socket())
	started := time.Now()
	err = f.Serve(ctx)
	fmt.Fprintf(stdout, "simfs: unmounted after %s\n", time.Since(started).Round(time.Millisecond))
	return err
}
