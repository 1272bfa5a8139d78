package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/probe"
	"github.com/lockprobe/lockprobe/proto"
)

// lockerCmd is the child (or remote agent) side. The shared secret comes from LOCKPROBE_TOKEN,
// not from the command line, where every user of the node could read it.
func lockerCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("locker", flag.ContinueOnError)
	connect := fs.String("connect", "", "the controller's endpoint, tcp://HOST:PORT")
	id := fs.Int("id", 0, "this locker's run-unique id")
	role := fs.String("role", "locker", "locker or observer")
	node := fs.String("node", "", "the node name this locker stands for (default: host name)")
	startup := fs.Duration("startup-timeout", probe.DefaultStartupTimeout, "give up when the controller has not welcomed and synced this locker by then")
	var allow stringList
	fs.Var(&allow, "allow", "a file this locker may open (repeatable); files named by adding a suffix are allowed too")
	slurmLockers := fs.Int("slurm-lockers", -1, "started as a task of an srun step (-launcher slurm): the task's rank (SLURM_PROCID) is the locker id; ranks from this number on are the nodes' observers, in node order")
	tokenStdin := fs.Bool("token-stdin", false, "read the token from the first line of standard input (-launcher ssh); the end of the input then means the launcher is gone, and the locker leaves")
	existing := fs.Bool("existing", false, "the first -allow file must exist already: a launched locker never creates the run's file (where a node's mount is missing it would land on its local disk)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *connect == "" || len(allow) == 0 {
		return usagef("-connect and -allow are required")
	}
	if *slurmLockers >= 0 {
		var err error
		if *id, *role, err = slurmRank(*slurmLockers, os.Getenv("SLURM_PROCID")); err != nil {
			return usagef("-slurm-lockers: %v", err)
		}
	}
	if *existing {
		if err := checkExisting(allow[0]); err != nil {
			return err
		}
	}
	token := os.Getenv("LOCKPROBE_TOKEN")
	in := bufio.NewReader(os.Stdin)
	if *tokenStdin {
		line, err := in.ReadString('\n')
		if err != nil {
			return usagef("-token-stdin: no token on standard input: %v", err)
		}
		token = strings.TrimSpace(line)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := probe.New(probe.Options{Endpoint: *connect, ID: *id, Role: *role, Node: *node, Token: token, Allow: allow, StartupTimeout: *startup, Version: version, Log: log,
		DefaultGOMAXPROCS: os.Getenv(proto.EnvStartGOMAXPROCS) != ""})
	if err != nil {
		return usagef("%v", err)
	}
	// The controller stops lockers over the wire; a terminal's Ctrl-C reaches the controller
	// only (lockers run in their own process group). A signal here still ends the run cleanly,
	// and so does the end of an ssh session's input.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *tokenStdin {
		go func() {
			_, _ = io.Copy(io.Discard, in)
			stop()
		}()
	}
	return l.Run(ctx)
}

// slurmRank turns a task's rank into its member: ranks below lockers are locker ids, the rest
// are the observers of the step's nodes in order (observer ids are -1-k).
func slurmRank(lockers int, procID string) (int, string, error) {
	rank, err := strconv.Atoi(procID)
	if err != nil || rank < 0 {
		return 0, "", fmt.Errorf("SLURM_PROCID %q is not a task rank (not started by srun?)", procID)
	}
	if rank < lockers {
		return rank, "locker", nil
	}
	return -1 - (rank - lockers), "observer", nil
}

// checkExisting accepts an existing regular file this process may read and write.
func checkExisting(p string) error {
	st, err := os.Stat(p)
	switch {
	case err != nil:
		return usagef("-allow %s: %v", p, err)
	case !st.Mode().IsRegular():
		return usagef("-allow %s: not a regular file", p)
	}
	if err := unix.Access(p, unix.R_OK|unix.W_OK); err != nil {
		return usagef("-allow %s: cannot read and write it: %v", p, err)
	}
	return nil
}
