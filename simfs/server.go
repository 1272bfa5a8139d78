package simfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/simfs/locktable"
)

// FSType is the mount type of a simfs mount in mountinfo.
const FSType = "fuse.simfs"

// MaxNodes bounds Options.Nodes.
const MaxNodes = 64

// Options configure a simfs.
type Options struct {
	// Dir holds the mounts, Dir/node0 … Dir/node{Nodes-1}, and the control socket. Required;
	// it must exist.
	Dir string
	// Nodes is the number of client nodes (mounts), 1 to MaxNodes. Required.
	Nodes int
	// Mode is how nodes share locks. Optional: ModeFlock.
	Mode Mode
	// Detect is the server's deadlock detection. Optional: DetectFirst, Lustre's.
	Detect Detect
	// Faults act on the lock manager. Optional.
	Faults []Fault
	// Log receives what simfs does (mounts, faults firing). Optional: discarded.
	Log *slog.Logger
	// Debug logs every FUSE request. Optional.
	Debug bool
}

// FS is a running simfs: its mounts, its lock manager and its control socket.
type FS struct {
	opts    Options
	tree    *tree
	mgr     *Manager
	servers []*fuse.Server
	mounts  []string
	ln      net.Listener
	sock    string
	wg      sync.WaitGroup
	once    sync.Once
	err     error
}

// Check validates options without touching anything.
func (o *Options) Check() error {
	if o.Dir == "" {
		return errors.New("simfs: -mount DIR is required")
	}
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return fmt.Errorf("simfs: -nodes %d: want 1 to %d", o.Nodes, MaxNodes)
	}
	for _, f := range o.Faults {
		if f.Node != AnyNode && f.Node >= o.Nodes {
			return fmt.Errorf("simfs: fault %s: node %d does not exist (nodes 0 to %d)", f, f.Node, o.Nodes-1)
		}
		if o.Mode != ModeFlock {
			return fmt.Errorf("simfs: fault %s: faults act on the lock manager, which only mode flock uses (mode is %s)", f, o.Mode)
		}
	}
	st, err := os.Stat(o.Dir)
	if err != nil {
		return fmt.Errorf("simfs: -mount %s: %w", o.Dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("simfs: -mount %s: not a directory", o.Dir)
	}
	return nil
}

// MountPoint returns node i's mount point under dir.
func MountPoint(dir string, i int) string { return filepath.Join(dir, "node"+strconv.Itoa(i)) }

// Start removes dead simfs mounts under opts.Dir, mounts the nodes and opens the control
// socket. It fails, leaving nothing mounted, when a live simfs serves opts.Dir.
func Start(opts Options) (*FS, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("simfs: %w", err)
	}
	opts.Dir = dir
	if _, err := Cleanup(dir); err != nil {
		return nil, err
	}
	f := &FS{opts: opts, tree: newTree(uint32(os.Getuid()), uint32(os.Getgid())),
		mgr: NewManager(opts.Mode, opts.Detect, opts.Faults, nil)}
	for i := range opts.Nodes {
		if err := f.mount(i); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	if err := f.listen(); err != nil {
		_ = f.Close()
		return nil, err
	}
	opts.Log.Info("simfs serving", "dir", dir, "nodes", opts.Nodes, "mode", opts.Mode, "detect", opts.Detect, "faults", len(opts.Faults))
	return f, nil
}

// source is the mount source: the mode for lockprobe, the pid for Cleanup.
func source(mode Mode) string { return fmt.Sprintf("simfs:%s:%d", mode, os.Getpid()) }

func (f *FS) mount(i int) error {
	mp := MountPoint(f.opts.Dir, i)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return fmt.Errorf("simfs: %w", err)
	}
	srv, err := fuse.NewServer(newNodeFS(f, i), mp, &fuse.MountOptions{
		FsName:             source(f.opts.Mode),
		Name:               "simfs",
		EnableLocks:        f.opts.Mode != ModeLocalflock, // localflock: the kernel's own, per mount
		DirectMount:        true,
		AllowOther:         os.Getuid() == 0,
		DisableXAttrs:      true,
		DisableReadDirPlus: true,
		Debug:              f.opts.Debug,
	})
	if err != nil {
		_ = os.Remove(mp)
		return fmt.Errorf("simfs: mount %s: %w", mp, err)
	}
	f.servers = append(f.servers, srv)
	f.mounts = append(f.mounts, mp)
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		return fmt.Errorf("simfs: mount %s: %w", mp, err)
	}
	return nil
}

// Mounts returns the mount points, node 0 first.
func (f *FS) Mounts() []string { return append([]string(nil), f.mounts...) }

// Socket returns the control socket's path.
func (f *FS) Socket() string { return f.sock }

// Manager returns the lock server.
func (f *FS) Manager() *Manager { return f.mgr }

// Dump writes the lock table in locktable's text form.
func (f *FS) Dump(w io.Writer) error {
	return locktable.Write(w, f.mgr.Table(f.opts.Faults))
}

func (f *FS) listen() error {
	f.sock = filepath.Join(f.opts.Dir, locktable.SocketName)
	_ = os.Remove(f.sock) // Cleanup checked that no live simfs owns it
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		return fmt.Errorf("simfs: control socket: %w", err)
	}
	_ = os.Chmod(f.sock, 0o600)
	f.ln = ln
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.serve(c)
			}()
		}
	}()
	return nil
}

// serve answers one client of the control socket.
func (f *FS) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	if err != nil || line != locktable.Request {
		fmt.Fprintf(c, "error: want %q\n", locktable.Request)
		return
	}
	_ = f.Dump(c)
}

// Close fails every waiter (EIO), unmounts every node (lazily when a process still has a file
// open there), removes the mount points and the socket. It is safe to call twice.
func (f *FS) Close() error {
	f.once.Do(func() {
		f.mgr.Close()
		if f.ln != nil {
			_ = f.ln.Close()
			_ = os.Remove(f.sock)
		}
		var errs []error
		for i, srv := range f.servers {
			mp := f.mounts[i]
			if err := srv.Unmount(); err != nil {
				if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
					errs = append(errs, fmt.Errorf("simfs: unmount %s: %w", mp, err))
					continue
				}
				f.opts.Log.Warn("simfs: busy mount detached", "mount", mp)
			}
			_ = os.Remove(mp)
		}
		f.wg.Wait()
		f.err = errors.Join(errs...)
	})
	return f.err
}

// Cleanup unmounts the simfs mounts under dir whose server is gone (killed: the kernel keeps
// a dead FUSE mount until someone unmounts it) and removes their mount points and a stale
// control socket. It returns what it removed; a mount whose server still runs is an error.
func Cleanup(dir string) ([]string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("simfs: %w", err)
	}
	mounts, err := MountsUnder(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	// Last mounted first, so that a mount over another goes before it.
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		if pid, live := serverOf(m.Source); live {
			return removed, fmt.Errorf("simfs: %s is served by a running simfs (pid %d); stop it first", m.MountPoint, pid)
		}
		if err := unix.Unmount(m.MountPoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return removed, fmt.Errorf("simfs: unmount dead %s: %w", m.MountPoint, err)
		}
		_ = os.Remove(m.MountPoint)
		removed = append(removed, m.MountPoint)
	}
	sock := filepath.Join(dir, locktable.SocketName)
	if _, err := os.Lstat(sock); err == nil {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return removed, fmt.Errorf("simfs: %s answers: a simfs is running there", sock)
		}
		if err := os.Remove(sock); err == nil {
			removed = append(removed, sock)
		}
	}
	return removed, nil
}

// MountsUnder returns the simfs mounts whose mount point is a folder of dir (DIR/nodeK), in
// mountinfo's order.
func MountsUnder(dir string) ([]host.Mount, error) {
	f, err := os.Open(host.MountInfoPath)
	if err != nil {
		return nil, fmt.Errorf("simfs: %w", err)
	}
	defer f.Close()
	all, err := host.ParseMountInfo(f)
	if err != nil {
		return nil, fmt.Errorf("simfs: %w", err)
	}
	var out []host.Mount
	for _, m := range all {
		if m.FSType == FSType && filepath.Dir(m.MountPoint) == filepath.Clean(dir) {
			out = append(out, m)
		}
	}
	return out, nil
}

// serverOf reads the pid out of a mount source "simfs:MODE:PID" and tells whether that process
// is a running simfs (its command line names simfs; a pid reused by another program is not).
func serverOf(source string) (int, bool) {
	i := strings.LastIndex(source, ":")
	pid, err := strconv.Atoi(source[i+1:])
	if i < 0 || err != nil || pid <= 0 {
		return 0, false
	}
	if pid == os.Getpid() {
		return pid, true
	}
	cmd, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return pid, false
	}
	st, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if _, rest, ok := strings.Cut(string(st), ") "); ok && strings.HasPrefix(rest, "Z") {
		return pid, false // a zombie serves nothing
	}
	return pid, strings.Contains(string(cmd), "simfs")
}

// Serve runs f until ctx ends, then closes it.
func (f *FS) Serve(ctx context.Context) error {
	<-ctx.Done()
	return f.Close()
}
