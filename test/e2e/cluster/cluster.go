package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/test/e2e/gluster"
)

// ErrUnavailable is wrapped by Start's error when the cluster cannot be built here at all (not
// root, no network namespaces, installing disallowed): tests skip on it.
var ErrUnavailable = errors.New("test cluster unavailable")

// Options configure a cluster. Zero values get defaults.
type Options struct {
	// Nodes is how many nodes to make. Optional: 3.
	Nodes int
	// Slurm starts munged, slurmctld and a slurmd per node. Optional.
	Slurm bool
	// SSH starts an sshd per node and writes a client configuration. Optional.
	SSH bool
	// Gluster creates a GlusterFS volume mounted at Mount on every node. Optional.
	Gluster bool
	// GlusterSet holds volume options set before any client connects (e.g. FastKeepalive).
	// Optional.
	GlusterSet [][2]string
	// Logger receives progress and teardown diagnostics. Optional: slog.Default().
	Logger *slog.Logger
	// NoInstall makes missing programs an ErrUnavailable instead of installing Debian's
	// packages with apt-get. Optional.
	NoInstall bool
}

// FastKeepalive are the GlusterFS volume options under which the brick notices a silent
// client within 2-3 s (with the defaults it took ~40 s; network.ping-timeout alone did not
// change that): TCP keepalive and user timeout on both ends of every connection.
var FastKeepalive = [][2]string{
	{"server.tcp-user-timeout", "3"}, {"server.keepalive-time", "2"},
	{"server.keepalive-interval", "1"}, {"server.keepalive-count", "2"},
	{"client.tcp-user-timeout", "3"}, {"client.keepalive-time", "2"},
	{"client.keepalive-interval", "1"}, {"client.keepalive-count", "2"},
}

// Cluster is one test cluster. Its exported fields are fixed once Start returns.
type Cluster struct {
	// ID is the random name part shared by everything of this cluster.
	ID string
	// Dir holds the cluster's configuration, sockets, logs and spool folders; nodes see it.
	Dir string
	// Bridge is the bridge's name, Addr its address: the root namespace's address on the
	// cluster's network, where slurmctld, glusterd and a lockprobe controller are reached.
	Bridge string
	Addr   string
	// Nodes are the nodes, in order.
	Nodes []*Node
	// Mount is the volume's mount point on every node (Gluster only).
	Mount string
	// Volume is the GlusterFS volume (Gluster only): brick, statedump.
	Volume *gluster.Cluster
	// GlusterSocket is glusterd's CLI socket (Gluster only), for lockprobe's -gluster-sock.
	GlusterSocket string
	// SSHConfig is the ssh client configuration naming every node (SSH only): `ssh -F`.
	SSHConfig string

	opts     Options
	log      *slog.Logger
	net      network
	daemons  []*daemon // munged, slurmctld: stopped in reverse order
	glusterd *gluster.Daemon
	once     sync.Once
	err      error
}

// Start builds a cluster torn down by t.Cleanup (also when the test fails). It skips the test
// when a cluster cannot be built here (ErrUnavailable).
func Start(ctx context.Context, t testing.TB, opts Options) (*Cluster, error) {
	t.Helper()
	c, err := New(ctx, opts)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("cluster teardown: %v", err)
		}
	})
	return c, nil
}

// New builds a cluster; the caller must Close it.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: namespaces, bridges and daemons need root", ErrUnavailable)
	}
	if err := ensureInstalled(ctx, opts); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(BaseDir(), 0o755); err != nil {
		return nil, fmt.Errorf("cluster base dir: %w", err)
	}
	// One cluster at a time chooses names and cleans up, so that two test binaries never take
	// the same subnet or end each other's clusters.
	unlock, err := lptest.LockFile(ctx, filepath.Join(BaseDir(), ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	CleanStale(log)

	c := &Cluster{opts: opts, log: log}
	if err := c.claim(); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := c.build(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	log.Info("test cluster up", "id", c.ID, "nodes", len(c.Nodes), "slurm", opts.Slurm, "ssh", opts.SSH,
		"gluster", opts.Gluster, "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// BaseDir is where every cluster keeps its files. It is not below /tmp: every node mounts a
// tmpfs of its own there, and the nodes must see the cluster's sockets and configuration.
func BaseDir() string { return "/var/tmp/lockprobe-cluster" }

// claim picks an unused ID and subnet and creates the cluster's folder with its owner file.
func (c *Cluster) claim() error {
	for range 20 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id := hex.EncodeToString(b[:])[:5]
		dir := filepath.Join(BaseDir(), "c-"+id)
		if _, err := os.Stat(dir); err == nil || linkExists(prefix(id)+"br") {
			continue
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("cluster dir: %w", err)
		}
		c.ID, c.Dir = id, dir
		if err := lptest.WriteOwner(dir); err != nil {
			return err
		}
		for _, sub := range []string{"log", "run"} {
			if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
				return fmt.Errorf("cluster dir: %w", err)
			}
		}
		return nil
	}
	return errors.New("no free cluster id after 20 tries")
}

// prefix is the start of every link and namespace name of cluster id: short, because link
// names have at most 15 bytes.
func prefix(id string) string { return "lpc" + id }

// build brings up the network, the daemons around the nodes, then the nodes, and waits until
// every part answers.
func (c *Cluster) build(ctx context.Context) error {
	if err := c.net.up(c.ID, c.opts.Nodes); err != nil {
		return err
	}
	c.Bridge, c.Addr = c.net.bridge, c.net.addr
	for i := range c.opts.Nodes {
		c.Nodes = append(c.Nodes, &Node{Index: i, Name: fmt.Sprintf("%s-n%d", prefix(c.ID), i),
			Addr: c.net.nodeAddr(i), NetNS: c.net.netns(i), hostLink: c.net.hostLink(i), c: c})
	}
	if c.opts.Gluster {
		if err := c.startGluster(ctx); err != nil {
			return err
		}
	}
	if c.opts.Slurm {
		if err := c.startSlurm(ctx); err != nil {
			return err
		}
	}
	if c.opts.SSH {
		if err := c.writeSSH(); err != nil {
			return err
		}
	}
	for _, n := range c.Nodes {
		if err := n.start(); err != nil {
			return err
		}
	}
	for _, n := range c.Nodes {
		if err := n.waitReady(ctx); err != nil {
			return err
		}
	}
	if c.opts.Slurm {
		return c.waitSlurmNodes(ctx)
	}
	return nil
}

// startGluster starts a glusterd on the bridge's address and creates the volume every node
// mounts (Options.GlusterSet applied before the first client connects).
func (c *Cluster) startGluster(ctx context.Context) error {
	d, err := gluster.StartDaemon(ctx, gluster.DaemonOptions{Logger: c.log, NoInstall: c.opts.NoInstall, Addr: c.Addr})
	if errors.Is(err, gluster.ErrUnavailable) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err != nil {
		return err
	}
	c.glusterd = d
	c.GlusterSocket = d.Socket()
	v, err := d.Create(ctx, gluster.Options{NoMounts: true, Set: c.opts.GlusterSet})
	if err != nil {
		return err
	}
	c.Volume = v
	c.Mount = filepath.Join(c.Dir, "vol")
	return os.Mkdir(c.Mount, 0o755)
}

// Env returns the environment variables Slurm's commands need for this cluster (SLURM_CONF),
// added to this process's environment without any SLURM_ variable of its own.
func (c *Cluster) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLURM_") {
			env = append(env, kv)
		}
	}
	if c.opts.Slurm {
		env = append(env, "SLURM_CONF="+c.slurmConf())
	}
	return env
}

// Command returns a command for a program of the root namespace (srun, ssh, lockprobe...) with
// the cluster's environment.
func (c *Cluster) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = c.Env()
	cmd.Dir = "/" // the caller's folder may be below /tmp, which no node sees
	return cmd
}

// Close stops the nodes (their processes, mounts and clients with them), the daemons, the
// volume and glusterd, deletes the links and namespaces and removes Dir. It is safe to call
// more than once; later calls return the first result.
func (c *Cluster) Close() error {
	c.once.Do(func() {
		start := time.Now()
		var errs []error
		for _, n := range c.Nodes {
			errs = append(errs, n.stop())
		}
		for i := len(c.daemons) - 1; i >= 0; i-- {
			errs = append(errs, c.daemons[i].stop())
		}
		if c.Volume != nil {
			errs = append(errs, c.Volume.Close())
		}
		if c.glusterd != nil {
			errs = append(errs, c.glusterd.Close())
		}
		errs = append(errs, c.net.down())
		if c.Dir != "" {
			killMatching(c.Dir, c.log)
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", c.Dir, err))
			}
		}
		c.err = errors.Join(errs...)
		c.log.Info("test cluster down", "id", c.ID, "took", time.Since(start).Round(time.Millisecond), "err", c.err)
	})
	return c.err
}

// ensureInstalled installs what the options need: Slurm and munge, openssh, GlusterFS (through
// package gluster), and the namespace tools.
func ensureInstalled(ctx context.Context, opts Options) error {
	pkgs := []string{"iproute2", "util-linux"}
	tools := []string{"ip", "nsenter", "unshare"}
	if opts.Slurm {
		pkgs = append(pkgs, "slurmd", "slurmctld", "slurm-client", "munge")
		tools = append(tools, "slurmd", "slurmctld", "srun", "sbcast", "scancel", "salloc", "squeue", "sinfo", "scontrol", "munged")
	}
	if opts.SSH {
		pkgs = append(pkgs, "openssh-server", "openssh-client")
		tools = append(tools, "sshd", "ssh", "scp", "ssh-keygen")
	}
	miss := lptest.Missing(tools)
	if len(miss) == 0 {
		return nil
	}
	if opts.NoInstall {
		return fmt.Errorf("%w: %s not installed", ErrUnavailable, strings.Join(miss, ", "))
	}
	if err := os.MkdirAll(BaseDir(), 0o755); err != nil {
		return fmt.Errorf("cluster base dir: %w", err)
	}
	start := time.Now()
	if err := lptest.Install(ctx, filepath.Join(BaseDir(), ".install.lock"), pkgs, tools); err != nil {
		return err
	}
	opts.Logger.Info("installed", "packages", pkgs, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
