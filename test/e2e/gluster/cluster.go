package gluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/internal/lptest"
	"golang.org/x/sys/unix"
)

// fuseSuperMagic is statfs's f_type of a FUSE mount.
const fuseSuperMagic = 0x65735546

// Options configures a cluster.
type Options struct {
	// Mounts is how many FUSE mounts (glusterfs client processes, "nodes")
	// of the volume to make. Optional: 2 when 0.
	Mounts int
	// NoMounts makes a volume nobody here mounts: its clients run
	// elsewhere (inside network namespaces) and connect to Daemon.Addr.
	NoMounts bool
	// Set holds volume options ("server.keepalive-time", "2") set before
	// the volume starts, so that every client connects under them. Optional.
	Set [][2]string
	// Daemon is used by Start for the glusterd it starts. Optional.
	Daemon DaemonOptions
}

// Cluster is one volume of a Daemon with its brick and mounts.
type Cluster struct {
	// Volume is the volume's unique name.
	Volume string
	// Brick is the brick directory: the file a test locks through a mount
	// is the brick's file of the same name.
	Brick string
	// Mounts are the mount points, one per glusterfs client process.
	Mounts []string

	d         *Daemon
	ownD      bool
	dir       string
	dumpDir   string
	brickSock string
	mu        sync.Mutex // guards clients
	dumpMu    sync.Mutex // serialises statedumps
	clients   []*client
	once      sync.Once
	err       error
}

// client is one glusterfs FUSE client process serving a mount.
type client struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts a glusterd of its own and one cluster on it, both torn down
// by t.Cleanup (also when the test fails). It skips the test when GlusterFS
// cannot run here (ErrUnavailable: not root, no /dev/fuse, ...).
func Start(ctx context.Context, t testing.TB, opts Options) (*Cluster, error) {
	t.Helper()
	d, err := StartDaemon(ctx, opts.Daemon)
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		return nil, err
	}
	c, err := d.newCluster(ctx, opts)
	if err != nil {
		return nil, errors.Join(err, d.Close())
	}
	c.ownD = true
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("gluster teardown: %v", err)
		}
	})
	return c, nil
}

// Use returns d for a test, skipping the test when the shared daemon could
// not start because GlusterFS is unavailable and failing it on any other
// error: for test binaries that start one Daemon in TestMain.
func Use(t testing.TB, d *Daemon, startErr error) *Daemon {
	t.Helper()
	switch {
	case errors.Is(startErr, ErrUnavailable):
		t.Skip(startErr)
	case startErr != nil:
		t.Fatalf("glusterd: %v", startErr)
	case d == nil:
		t.Skip("glusterd not started (-short?)")
	}
	return d
}

// NewCluster creates, starts and mounts a new volume on d, torn down by
// t.Cleanup (also when the test fails); the daemon stays up.
func (d *Daemon) NewCluster(ctx context.Context, t testing.TB, opts Options) (*Cluster, error) {
	t.Helper()
	c, err := d.newCluster(ctx, opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("gluster teardown: %v", err)
		}
	})
	return c, nil
}

// Create creates, starts and mounts a new volume on d, for callers that are
// not tests; the caller must Close it (the daemon's Close does too).
func (d *Daemon) Create(ctx context.Context, opts Options) (*Cluster, error) {
	return d.newCluster(ctx, opts)
}

func (d *Daemon) newCluster(ctx context.Context, opts Options) (*Cluster, error) {
	n := opts.Mounts
	if n <= 0 {
		n = 2
	}
	if opts.NoMounts {
		n = 0
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("volume name: %w", err)
	}
	name := "lp" + hex.EncodeToString(rnd[:])
	c := &Cluster{Volume: name, d: d, dir: filepath.Join(d.Dir, name)}
	c.Brick = filepath.Join(c.dir, "brick")
	c.dumpDir = filepath.Join(c.dir, "dump")
	for _, p := range []string{c.Brick, c.dumpDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("cluster dir: %w", err)
		}
	}
	for i := range n {
		m := filepath.Join(c.dir, fmt.Sprintf("m%d", i))
		if err := os.MkdirAll(m, 0o755); err != nil {
			return nil, fmt.Errorf("mount dir: %w", err)
		}
		c.Mounts = append(c.Mounts, m)
	}
	d.mu.Lock()
	d.live[c] = true
	d.mu.Unlock()
	if err := c.setUp(ctx, opts.Set); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// setUp creates the volume, sets its options, starts and mounts it.
func (c *Cluster) setUp(ctx context.Context, set [][2]string) error {
	start := time.Now()
	// "force": GlusterFS refuses bricks on the root file system otherwise.
	if _, err := c.d.Gluster(ctx, "volume", "create", c.Volume, c.d.Addr+":"+c.Brick, "force"); err != nil {
		return err
	}
	// Dumps go to the cluster's own directory, not /var/run/gluster.
	if _, err := c.d.Gluster(ctx, "volume", "set", c.Volume, "server.statedump-path", c.dumpDir); err != nil {
		return err
	}
	for _, kv := range set {
		if _, err := c.d.Gluster(ctx, "volume", "set", c.Volume, kv[0], kv[1]); err != nil {
			return err
		}
	}
	c.d.log.Debug("volume created", "volume", c.Volume, "after", time.Since(start).Round(time.Millisecond))
	if _, err := c.d.Gluster(ctx, "volume", "start", c.Volume); err != nil {
		return err
	}
	c.d.log.Debug("volume started", "volume", c.Volume, "after", time.Since(start).Round(time.Millisecond))
	c.brickSock = c.findBrickSocket()
	c.clients = make([]*client, len(c.Mounts))
	for i := range c.Mounts {
		if err := c.mount(ctx, i); err != nil {
			return err
		}
	}
	c.d.log.Info("gluster cluster up", "volume", c.Volume, "mounts", len(c.Mounts), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// findBrickSocket returns the unix socket the brick process was given
// (-S, under /var/run/gluster), to remove it at Close.
func (c *Cluster) findBrickSocket() string {
	for _, p := range glusterProcs() {
		if !strings.Contains(p.cmdline, "--brick-name "+c.Brick) {
			continue
		}
		f := strings.Fields(p.cmdline)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "-S" {
				return f[i+1]
			}
		}
	}
	return ""
}

// mount starts the glusterfs client of mount i in the foreground (-N), as
// this process's child, and waits until the mount answers.
func (c *Cluster) mount(ctx context.Context, i int) error {
	dir := c.Mounts[i]
	cmd := exec.Command("glusterfs", "-N", "--process-name", "fuse",
		"--volfile-server="+c.d.Addr, "--volfile-id="+c.Volume,
		"-l", filepath.Join(c.dir, fmt.Sprintf("m%d.log", i)), dir)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting glusterfs for %s: %w", dir, err)
	}
	cl := &client{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(cl.exited) }()
	c.mu.Lock()
	c.clients[i] = cl
	c.mu.Unlock()
	return lptest.WaitUntil(ctx, 20*time.Millisecond, "mount "+dir, func() (bool, error) {
		select {
		case <-cl.exited:
			return false, fmt.Errorf("glusterfs for %s exited; see its log in %s", dir, c.dir)
		default:
		}
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return false, nil
		}
		return st.Type == fuseSuperMagic, nil
	})
}

// ClientPID returns the pid of the glusterfs client process serving mount
// i, for SIGSTOP, SIGCONT or SIGKILL; 0 when i is out of range.
func (c *Cluster) ClientPID(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.clients) || c.clients[i] == nil {
		return 0
	}
	return c.clients[i].cmd.Process.Pid
}

// MountOf returns the index of the mount whose glusterfs client has pid
// clientPID (a GlusterLock's ClientPID), or -1.
func (c *Cluster) MountOf(clientPID int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cl := range c.clients {
		if cl != nil && clientPID != 0 && cl.cmd.Process.Pid == clientPID {
			return i
		}
	}
	return -1
}

// Remount replaces mount i's client with a new one, after a test killed it
// (its mount then answers ENOTCONN) or to reset it: the old client is
// woken, killed and reaped, its mount removed, and a new one mounted.
func (c *Cluster) Remount(ctx context.Context, i int) error {
	if i < 0 || i >= len(c.Mounts) {
		return fmt.Errorf("no mount %d", i)
	}
	if err := c.stopClient(i); err != nil {
		return err
	}
	return c.mount(ctx, i)
}

// stopClient unmounts mount i and ends its client process.
func (c *Cluster) stopClient(i int) error {
	c.mu.Lock()
	cl := c.clients[i]
	c.mu.Unlock()
	if cl == nil {
		return nil
	}
	p := cl.cmd.Process
	// A stopped client cannot answer FUSE's destroy: wake it first.
	_ = p.Signal(unix.SIGCONT)
	lazy, err := unmount(c.Mounts[i])
	if lazy {
		// A lazily unmounted client still serves the open files and would
		// never exit; their callers get ENOTCONN when it goes.
		_ = p.Kill()
	}
	select {
	case <-cl.exited:
	case <-time.After(5 * time.Second):
		_ = p.Kill()
		select {
		case <-cl.exited:
		case <-time.After(10 * time.Second):
			err = errors.Join(err, fmt.Errorf("glusterfs %d for %s did not exit", p.Pid, c.Mounts[i]))
		}
	}
	return err
}

// Statedump asks the brick for a statedump and returns it. Dumps are
// serialised: the brick names its dump file by the second, so two in one
// second would share a file.
func (c *Cluster) Statedump(ctx context.Context) ([]byte, error) {
	c.dumpMu.Lock()
	defer c.dumpMu.Unlock()
	old, _ := filepath.Glob(filepath.Join(c.dumpDir, "*"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	if _, err := c.d.Gluster(ctx, "volume", "statedump", c.Volume); err != nil {
		return nil, err
	}
	var dump []byte
	err := lptest.WaitUntil(ctx, 20*time.Millisecond, "statedump of "+c.Volume, func() (bool, error) {
		files, _ := filepath.Glob(filepath.Join(c.dumpDir, "*.dump.*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			// The brick writes the end marker last.
			if bytes.Contains(b, []byte("\nDUMP-END-TIME:")) {
				dump = b
				_ = os.Remove(f)
				return true, nil
			}
		}
		return false, nil
	})
	return dump, err
}

// Locks returns the brick's lock entries from a fresh statedump.
func (c *Cluster) Locks(ctx context.Context) ([]host.GlusterLock, error) {
	b, err := c.Statedump(ctx)
	if err != nil {
		return nil, err
	}
	return host.ParseStatedump(bytes.NewReader(b))
}

// Close unmounts every mount (waking stopped clients first, lazily where
// busy), ends the clients, stops and deletes the volume, removes the
// cluster's files, and stops glusterd when Start started it. It is safe to
// call more than once; later calls return the first result.
func (c *Cluster) Close() error {
	c.once.Do(func() {
		start := time.Now()
		var errs []error
		for i := range c.Mounts {
			if c.clients != nil && i < len(c.clients) {
				errs = append(errs, c.stopClient(i))
			} else {
				_, err := unmount(c.Mounts[i])
				errs = append(errs, err)
			}
		}
		c.d.log.Debug("mounts down", "volume", c.Volume, "after", time.Since(start).Round(time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := c.d.Gluster(ctx, "volume", "stop", c.Volume, "force"); err != nil && !strings.Contains(err.Error(), "does not exist") {
			errs = append(errs, err)
		}
		if _, err := c.d.Gluster(ctx, "volume", "delete", c.Volume); err != nil && !strings.Contains(err.Error(), "does not exist") {
			errs = append(errs, err)
		}
		c.d.log.Debug("volume deleted", "volume", c.Volume, "after", time.Since(start).Round(time.Millisecond))
		killMatching(c.dir, c.d.log)
		if c.brickSock != "" {
			_ = os.Remove(c.brickSock)
		}
		removeBrickFiles(c.dir)
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", c.dir, err))
		}
		c.d.mu.Lock()
		delete(c.d.live, c)
		c.d.mu.Unlock()
		if c.ownD {
			errs = append(errs, c.d.Close())
		}
		c.err = errors.Join(errs...)
		c.d.log.Info("gluster cluster down", "volume", c.Volume, "took", time.Since(start).Round(time.Millisecond), "err", c.err)
	})
	return c.err
}
