//go:build !lockeronly

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockprobe/lockprobe/control"
	"github.com/lockprobe/lockprobe/launch"
	"github.com/lockprobe/lockprobe/scenario"
)

// clusterFlags are run's flags for lockers on the nodes of a cluster.
type clusterFlags struct {
	launcher  launch.Kind
	nodes     int
	hosts     string
	spread    launch.Spread
	sshConfig string
}

// check validates the cluster flags against the rest. With a launcher, -file is a path on the
// nodes: this host need not see it (the lockers check it there).
func (c *clusterFlags) check(f *runFlags) error {
	if c.launcher == launch.Local {
		if c.nodes != 0 || c.hosts != "" || c.sshConfig != "" {
			return usagef("-nodes, -hosts and -ssh-config need -launcher slurm or ssh")
		}
		return nil
	}
	if len(f.files) != 1 {
		return usagef("-launcher %s: give -file once, the file's path on every node", c.launcher)
	}
	if !filepath.IsAbs(f.files[0]) || strings.ContainsRune(f.files[0], 0) {
		return usagef("-file %q: with -launcher %s, an absolute path on the nodes", f.files[0], c.launcher)
	}
	f.files[0] = filepath.Clean(f.files[0])
	if f.remote != 0 {
		return usagef("-remote and -launcher %s: the launcher starts every locker", c.launcher)
	}
	if c.nodes < 0 {
		return usagef("-nodes %d: must be positive", c.nodes)
	}
	if c.launcher == launch.Slurm && c.hosts != "" {
		return usagef("-hosts is for -launcher ssh; Slurm's nodes come from the allocation or -nodes")
	}
	if c.launcher == launch.Slurm && c.sshConfig != "" {
		return usagef("-ssh-config is for -launcher ssh")
	}
	if c.launcher == launch.SSH && c.hosts == "" {
		return usagef("-launcher ssh needs -hosts HOST,HOST,...")
	}
	return nil
}

// clusterRun is the launcher of one run and what it found out before the run.
type clusterRun struct {
	l        launch.Launcher
	nodes    []launch.Node
	delivery launch.Delivery
	runDir   string
}

// setUpCluster prepares a run across nodes: the launcher finds its nodes (Slurm: the
// allocation, or one of its own) and delivers the binary; the queues are expanded for the
// lockers' placement; the controller listens on the address that routes to the first node; and
// control starts the members through the launcher. A problem the user can fix is a usage error.
func (f *runFlags) setUpCluster(ctx context.Context, o *control.Options, sc *scenario.Scenario, procs int, log *slog.Logger) (*clusterRun, error) {
	c := &f.cluster
	dir, err := os.MkdirTemp("", "lockprobe-launch-") // 0700: the task layout
	if err != nil {
		return nil, err
	}
	cr := &clusterRun{runDir: dir}
	fail := func(err error) (*clusterRun, error) {
		cr.close()
		var se *launch.SetupError
		if errors.As(err, &se) {
			return nil, usagef("-launcher %s: %v", c.launcher, se)
		}
		return nil, err
	}
	switch c.launcher {
	case launch.Slurm:
		cr.l, err = launch.NewSlurm(launch.SlurmOptions{JobID: os.Getenv("SLURM_JOB_ID"), NodeList: os.Getenv("SLURM_JOB_NODELIST"),
			Nodes: c.nodes, Name: "lockprobe-" + randomName(), Env: os.Environ(), RunDir: dir, Log: log})
	case launch.SSH:
		hosts := strings.Split(c.hosts, ",")
		if c.nodes > 0 && c.nodes < len(hosts) {
			hosts = hosts[:c.nodes]
		}
		cr.l, err = launch.NewSSH(launch.SSHOptions{Hosts: hosts, Config: c.sshConfig, Env: os.Environ(), Log: log})
	}
	if err != nil {
		return fail(err)
	}
	if cr.nodes, err = cr.l.Nodes(ctx); err != nil {
		return fail(err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	if cr.delivery, err = cr.l.Deliver(ctx, exe); err != nil {
		return fail(err)
	}
	names := make([]string, len(cr.nodes))
	for i, n := range cr.nodes {
		names[i] = n.Name
	}
	place := launch.Place(procs, len(cr.nodes), c.spread)
	queues, err := sc.QueuesOn(procs, f.files, scenario.Placement{Nodes: len(cr.nodes), Node: place})
	if err != nil {
		return fail(usagef("%v", err))
	}
	if o.Listen == "" {
		local, err := launch.LocalAddr(cr.nodes[0].Addr)
		if err != nil {
			return fail(&launch.SetupError{Node: cr.nodes[0].Name, Msg: fmt.Sprintf("%v; give -listen tcp://ADDRESS:PORT", err)})
		}
		o.Listen = "tcp://" + net.JoinHostPort(local, "0")
	}
	o.Queues, o.Nodes, o.NodeOf = queues, names, place
	o.Launcher, o.Delivery = c.launcher.String(), cr.delivery.How
	if o.StartupTimeout == 0 {
		o.StartupTimeout = time.Minute
	}
	o.Launch = func(ctx context.Context, specs []control.Spec) (control.Group, error) {
		p := launch.Plan{Endpoint: o.Listen, File: f.files[0]}
		for _, s := range specs {
			p.Endpoint, p.Token, p.Startup = s.Endpoint, s.Token, s.StartupTimeout
			node := 0
			for k, n := range names {
				if n == s.Node {
					node = k
				}
			}
			p.Members = append(p.Members, launch.Member{ID: s.ID, Observer: s.Role == "observer", Node: node})
		}
		return cr.l.Start(ctx, p)
	}
	return cr, nil
}

// close undoes what the launcher did before the run: a copied binary, an allocation of its own.
func (cr *clusterRun) close() {
	if cr.l != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := cr.l.Close(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "lockprobe run:", err)
		}
		cancel()
	}
	_ = os.RemoveAll(cr.runDir)
}

// describe is the summary's line on the cluster: launcher, nodes, how the binary got there.
func (cr *clusterRun) describe(w io.Writer, l launch.Kind) {
	names := make([]string, len(cr.nodes))
	for i, n := range cr.nodes {
		names[i] = n.Name
	}
	fmt.Fprintf(w, "launcher: %s on %d nodes (%s); binary: %s\n", l, len(cr.nodes), strings.Join(names, ", "), cr.delivery.How)
}

// startError turns a launch that failed because of what the user gave (a node without the file,
// a host that refuses ssh) into a usage error.
func startError(err error) error {
	var se *launch.SetupError
	if errors.As(err, &se) {
		return usagef("%v", se)
	}
	return err
}

func isSetupError(err error) bool {
	var se *launch.SetupError
	return errors.As(err, &se)
}

func randomName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
