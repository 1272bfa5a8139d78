// Package gluster starts a private, loopback-only GlusterFS for tests: one
// glusterd with its own working directory, a one-brick volume per cluster,
// and K FUSE mounts of that volume, each served by its own glusterfs client
// process, so each mount behaves as a separate node towards the brick that
// arbitrates every lock.
//
// A test that needs one cluster calls Start; a test binary that wants one
// glusterd for all its tests starts a Daemon in TestMain and calls
// NewCluster per test (see the package's own tests):
//
//	var glusterd *gluster.Daemon
//	var glusterdErr error
//
//	func TestMain(m *testing.M) {
//		flag.Parse()
//		if !testing.Short() {
//			glusterd, glusterdErr = gluster.StartDaemon(ctx, gluster.DaemonOptions{})
//		}
//		code := m.Run()
//		if glusterd != nil {
//			glusterd.Close()
//		}
//		os.Exit(code)
//	}
//
//	func TestX(t *testing.T) {
//		c, err := gluster.Use(t, glusterd, glusterdErr).NewCluster(ctx, t, gluster.Options{Mounts: 2})
//		// c.Mounts[0], c.Mounts[1]: the same volume through two clients;
//		// c.ClientPID(1) to SIGSTOP; c.Locks(ctx) for the brick's view.
//	}
//
// Everything lives under
// os.TempDir()/lockprobe-gluster, which is how a later run finds and ends
// what a crashed run left behind.
//
// What GlusterFS 10.x does with locks across mounts is written down in
// FINDINGS.md beside this file.
package gluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/internal/lptest"
)

// ErrUnavailable is wrapped by the errors of StartDaemon and Start when
// GlusterFS cannot run here at all (not root, no /dev/fuse, no free
// loopback address, installing disallowed): tests skip on it.
var ErrUnavailable = errors.New("glusterfs unavailable")

// glusterdPort is the port glusterd listens on. It is fixed because the
// brick processes glusterd starts ask it for their volfile on this port;
// daemons running at the same time differ by loopback address instead.
const glusterdPort = 24007

// DaemonOptions configures StartDaemon.
type DaemonOptions struct {
	// Logger receives progress and teardown diagnostics. Optional:
	// slog.Default() when nil.
	Logger *slog.Logger
	// NoInstall makes a missing GlusterFS an ErrUnavailable instead of
	// installing glusterfs-server with apt-get. Optional.
	NoInstall bool
	// Addr is the address glusterd and its bricks bind to: one of this
	// host's, e.g. a bridge's that network namespaces reach. Optional: the
	// first loopback address of 127.0.0.2-254 where glusterd's port is free.
	Addr string
}

// Daemon is one glusterd of this package: bound to a loopback address of
// its own, with its working directory, sockets and logs under Dir.
type Daemon struct {
	// Addr is the loopback address glusterd and its bricks listen on,
	// and the host part of every brick and mount source.
	Addr string
	// Dir holds glusterd's working and run directories, logs, and the
	// clusters' bricks and mount points.
	Dir string

	log     *slog.Logger
	cmd     *exec.Cmd
	exited  chan struct{}
	sock    string
	mu      sync.Mutex
	live    map[*Cluster]bool
	closeMu sync.Once
	err     error
}

// StartDaemon installs GlusterFS if needed, ends what crashed runs of this
// package left behind, and starts a glusterd on a free loopback address.
// The caller must Close it.
func StartDaemon(ctx context.Context, opts DaemonOptions) (*Daemon, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: glusterd, bricks and FUSE mounts need root", ErrUnavailable)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("%w: no /dev/fuse: %v", ErrUnavailable, err)
	}
	if err := EnsureInstalled(ctx, opts.NoInstall, log); err != nil {
		return nil, err
	}
	base := BaseDir()
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("gluster base dir: %w", err)
	}
	// The lock makes cleanup, the choice of address and glusterd's bind
	// one step for test binaries that start daemons at the same time.
	unlock, err := lptest.LockFile(ctx, filepath.Join(base, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	CleanStale(log)

	addr := opts.Addr
	if addr == "" {
		addr, err = freeLoopback()
	} else {
		err = portFree(addr)
	}
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(base, "d-")
	if err != nil {
		return nil, fmt.Errorf("gluster daemon dir: %w", err)
	}
	d := &Daemon{Addr: addr, Dir: dir, log: log, sock: filepath.Join(dir, "run", "glusterd.socket"),
		exited: make(chan struct{}), live: map[*Cluster]bool{}}
	if err := d.start(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// BaseDir is where every daemon of this package keeps its files.
func BaseDir() string { return filepath.Join(os.TempDir(), "lockprobe-gluster") }

// start writes the volfile and the owner file and runs glusterd in the
// foreground (-N), so it is this process's child and its pid is known.
func (d *Daemon) start(ctx context.Context) error {
	for _, sub := range []string{"lib", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(d.Dir, sub), 0o755); err != nil {
			return fmt.Errorf("gluster daemon dir: %w", err)
		}
	}
	// The owner file lets CleanStale tell a live daemon of another test
	// binary from one whose test process died.
	if err := lptest.WriteOwner(d.Dir); err != nil {
		return err
	}
	vol := filepath.Join(d.Dir, "glusterd.vol")
	if err := os.WriteFile(vol, []byte(d.volfile()), 0o644); err != nil {
		return fmt.Errorf("glusterd volfile: %w", err)
	}
	args := []string{"glusterd", "-N", "-f", vol,
		"-p", filepath.Join(d.Dir, "run", "glusterd.pid"),
		"-l", filepath.Join(d.Dir, "log", "glusterd.log")}
	if pre, err := d.withoutGeoRep(); err != nil {
		d.log.Warn("glusterd starts with geo-replication set-up (about 20 s)", "why", err)
	} else {
		args = append(pre, args...)
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("starting glusterd: %w", err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	d.log.Info("glusterd started", "pid", d.cmd.Process.Pid, "addr", d.Addr, "dir", d.Dir)
	return lptest.WaitUntil(ctx, 50*time.Millisecond, "glusterd listening on "+d.Addr, func() (bool, error) {
		select {
		case <-d.exited:
			return false, fmt.Errorf("glusterd exited at start; see %s", filepath.Join(d.Dir, "log", "glusterd.log"))
		default:
		}
		if _, err := os.Stat(d.sock); err != nil {
			return false, nil
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(d.Addr, strconv.Itoa(glusterdPort)), time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
}

// gsyncdStandIn answers glusterd's geo-replication probe at once.
const gsyncdStandIn = `#!/bin/sh
# lockprobe test stand-in for gsyncd: glusterd only checks that it answers.
case "$1" in --version) echo "gsyncd.py stand-in";; esac
exit 0
`

// withoutGeoRep returns the command prefix that runs glusterd in a private
// mount namespace where libexecdir/gsyncd is a stand-in. At start glusterd
// runs gsyncd (Python) about 25 times to configure geo-replication, which
// takes 10-35 s here; with the stand-in start-up takes well under a second.
// Only glusterd and the bricks it spawns see the stand-in: the system's
// files and mounts are untouched. The command execs, so the pid stays
// glusterd's.
func (d *Daemon) withoutGeoRep() ([]string, error) {
	out, err := exec.Command("glusterfsd", "--print-libexecdir").Output()
	if err != nil {
		return nil, fmt.Errorf("glusterfsd --print-libexecdir: %w", err)
	}
	gsyncd := filepath.Join(strings.TrimSpace(string(out)), "gsyncd")
	if _, err := os.Stat(gsyncd); err != nil {
		return nil, err
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, err
	}
	standIn := filepath.Join(d.Dir, "gsyncd")
	if err := os.WriteFile(standIn, []byte(gsyncdStandIn), 0o755); err != nil {
		return nil, fmt.Errorf("gsyncd stand-in: %w", err)
	}
	return []string{unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" "$1" && shift && exec "$@"`, standIn, gsyncd}, nil
}

// volfile is glusterd's configuration: the Debian default with a private
// working and run directory, its own CLI socket, and a loopback bind.
func (d *Daemon) volfile() string {
	return fmt.Sprintf(`volume management
    type mgmt/glusterd
    option working-directory %s
    option run-directory %s
    option glusterd-sockfile %s
    option transport-type socket
    option transport.socket.bind-address %s
    option transport.socket.listen-port %d
    option transport.socket.keepalive-time 10
    option transport.socket.keepalive-interval 2
    option transport.socket.read-fail-log off
    option ping-timeout 0
    option event-threads 1
    option max-port 60999
end-volume
`, filepath.Join(d.Dir, "lib"), filepath.Join(d.Dir, "run"), d.sock, d.Addr, glusterdPort)
}

// Gluster runs the gluster CLI against this daemon and returns its output.
func (d *Daemon) Gluster(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--mode=script", "--glusterd-sock=" + d.sock,
		"--log-file=" + filepath.Join(d.Dir, "log", "cli.log")}, args...)
	out, err := exec.CommandContext(ctx, "gluster", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("gluster %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Socket is glusterd's CLI socket: what `gluster --glusterd-sock` and
// lockprobe's -gluster-sock need to reach this daemon.
func (d *Daemon) Socket() string { return d.sock }

// Close closes the daemon's clusters, stops glusterd and removes Dir. It is
// safe to call more than once; later calls return the first result.
func (d *Daemon) Close() error {
	d.closeMu.Do(func() {
		d.mu.Lock()
		var cs []*Cluster
		for c := range d.live {
			cs = append(cs, c)
		}
		d.mu.Unlock()
		var errs []error
		for _, c := range cs {
			errs = append(errs, c.Close())
		}
		if d.cmd != nil && d.cmd.Process != nil {
			errs = append(errs, stopChild(d.cmd.Process, d.exited, 10*time.Second))
		}
		// Bricks are daemons of glusterd, not its children: end any that
		// a failed volume stop left.
		killMatching(d.Dir, d.log)
		if err := os.RemoveAll(d.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", d.Dir, err))
		}
		d.err = errors.Join(errs...)
		d.log.Info("glusterd stopped", "dir", d.Dir, "err", d.err)
	})
	return d.err
}

// stopChild ends a child process: SIGTERM, then SIGKILL after grace.
func stopChild(p *os.Process, exited <-chan struct{}, grace time.Duration) error {
	select {
	case <-exited:
		return nil
	default:
	}
	_ = p.Signal(unix.SIGCONT)
	_ = p.Signal(unix.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
	}
	_ = p.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
		return fmt.Errorf("process %d did not exit after SIGKILL", p.Pid)
	}
}

// portFree checks that glusterd's port is free on addr.
func portFree(addr string) error {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(glusterdPort)))
	if err != nil {
		return fmt.Errorf("glusterd's port on %s: %w", addr, err)
	}
	return l.Close()
}

// freeLoopback returns the first address of 127.0.0.2-127.0.0.254 where
// glusterd's port is free. 127.0.0.1 is not usable: the gluster CLI refuses
// it (and localhost) as a brick host.
func freeLoopback() (string, error) {
	for i := 2; i < 255; i++ {
		addr := fmt.Sprintf("127.0.0.%d", i)
		if portFree(addr) == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("%w: port %d is taken on every address 127.0.0.2-254 (a system glusterd on 0.0.0.0?)", ErrUnavailable, glusterdPort)
}
