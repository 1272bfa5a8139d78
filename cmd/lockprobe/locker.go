package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lockprobe/lockprobe/probe"
)

// lockerCmd is the child (or remote agent) side. The shared secret comes from LOCKPROBE_TOKEN,
// not from the command line, where every user of the node could read it.
func lockerCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("locker", flag.ContinueOnError)
	connect := fs.String("connect", "", "the controller's endpoint, tcp://HOST:PORT")
	id := fs.Int("id", 0, "this locker's run-unique id")
	role := fs.String("role", "locker", "locker or observer")
	node := fs.String("node", "", "the node name this locker stands for (default: host name)")
	startup := fs.Duration("startup-timeout", 15*time.Second, "give up when the controller has not welcomed and synced this locker by then")
	var allow stringList
	fs.Var(&allow, "allow", "a file this locker may open (repeatable); files named by adding a suffix are allowed too")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *connect == "" || len(allow) == 0 {
		return usagef("-connect and -allow are required")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := probe.New(probe.Options{Endpoint: *connect, ID: *id, Role: *role, Node: *node, Token: os.Getenv("LOCKPROBE_TOKEN"), Allow: allow, StartupTimeout: *startup, Version: version, Log: log})
	if err != nil {
		return usagef("%v", err)
	}
	// The controller stops lockers over the wire; a terminal's Ctrl-C reaches the controller
	// only (lockers run in their own process group). A signal here still ends the run cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return l.Run(ctx)
}
