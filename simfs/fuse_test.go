package simfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
)

// serveEnv makes the test binary a simfs server on the folder it names (TestMain): a process
// the cleanup test can SIGKILL.
const serveEnv = "SIMFS_TEST_SERVE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(serveEnv); dir != "" {
		f, err := Start(Options{Dir: dir, Nodes: 2})
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("ready\n")
		time.Sleep(time.Minute)
		_ = f.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// needFUSE skips tests that mount: they need root and /dev/fuse.
func needFUSE(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("mounts FUSE file systems")
	}
	if os.Getuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// simfsMounts lists the simfs mounts under dir.
func simfsMounts(t *testing.T, dir string) []host.Mount {
	t.Helper()
	ms, err := MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func startFS(t *testing.T, opts Options) *FS {
	t.Helper()
	needFUSE(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	f, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		if left := simfsMounts(t, opts.Dir); len(left) > 0 {
			t.Errorf("mounts left after Close: %+v", left)
		}
	})
	return f
}

func setlk(fd int, typ int16, start, length int64) error {
	return unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: length})
}

// TestKernelPath proves that posix and flock requests reach the daemon through the kernel: a
// lock through node0 conflicts through node1, F_GETLK there names the holder, flock and fcntl
// conflict, a close drops the posix lock, and the mount source carries the mode.
func TestKernelPath(t *testing.T) {
	f := startFS(t, Options{Nodes: 2})
	m := f.Mounts()
	if err := os.WriteFile(filepath.Join(m[0], "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(m[1], "f")); err != nil || string(b) != "x" {
		t.Fatalf("node1 reads %q, %v; want the file node0 wrote", b, err)
	}
	a, err := unix.Open(filepath.Join(m[0], "f"), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(a)
	b, err := unix.Open(filepath.Join(m[1], "f"), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(b)
	if err := setlk(a, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatalf("posix write through node0: %v", err)
	}
	if err := setlk(b, unix.F_RDLCK, 5, 1); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("posix read through node1 under node0's write: %v, want EAGAIN", err)
	}
	if err := unix.Flock(b, unix.LOCK_SH|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatalf("flock through node1 under node0's posix write: %v, want EWOULDBLOCK", err)
	}
	if err := unix.FcntlFlock(uintptr(b), unix.F_OFD_SETLK, &unix.Flock_t{Type: unix.F_RDLCK, Start: 7, Len: 1}); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("OFD read through node1 under node0's posix write: %v, want EAGAIN", err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(b), unix.F_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if lk.Type != unix.F_WRLCK || lk.Pid != int32(os.Getpid()) || lk.Len != 0 {
		t.Fatalf("F_GETLK through node1 = %+v; want write [0,EOF) by pid %d", lk, os.Getpid())
	}
	// Closing another descriptor of the file through node0 ends the posix lock.
	c, err := unix.Open(filepath.Join(m[0], "f"), unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(c)
	if err := setlk(b, unix.F_WRLCK, 0, 0); err != nil {
		t.Fatalf("posix write through node1 after node0's close: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(m[0], &st); err != nil || st.Type != 0x65735546 {
		t.Fatalf("statfs magic %#x, %v; want FUSE's", st.Type, err)
	}
	ms := simfsMounts(t, f.opts.Dir)
	if len(ms) != 2 || !strings.HasPrefix(ms[0].Source, "simfs:flock:") {
		t.Fatalf("mounts %+v: want 2 with source simfs:flock:PID", ms)
	}
}

func TestNoflockAndLocalflock(t *testing.T) {
	f := startFS(t, Options{Nodes: 2, Mode: ModeNoflock})
	p := filepath.Join(f.Mounts()[0], "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(p, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := setlk(fd, unix.F_WRLCK, 0, 0); !errors.Is(err, unix.ENOSYS) {
		t.Errorf("noflock: F_SETLK = %v, want ENOSYS", err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.ENOSYS) {
		t.Errorf("noflock: flock = %v, want ENOSYS", err)
	}

	l := startFS(t, Options{Nodes: 2, Mode: ModeLocalflock})
	var fds []int
	for _, mp := range l.Mounts() {
		if err := os.WriteFile(filepath.Join(mp, "g"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(filepath.Join(mp, "g"), unix.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		fds = append(fds, fd)
	}
	if err := unix.Flock(fds[0], unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(fds[1], unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("localflock: node1's flock beside node0's: %v, want both granted", err)
	}
}

// TestCleanupAfterKill SIGKILLs a simfs: its mounts stay, dead; Cleanup removes them, and a new
// simfs on the same folder starts (it cleans up first too).
func TestCleanupAfterKill(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		_ = cmd.Process.Kill()
		t.Fatalf("server: %q, %v", buf, err)
	}
	if _, err := Cleanup(dir); err == nil {
		t.Errorf("Cleanup of a live simfs's folder succeeded")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	dead := simfsMounts(t, dir)
	if len(dead) != 2 {
		t.Fatalf("after SIGKILL: %d simfs mounts, want the 2 dead ones", len(dead))
	}
	if _, err := os.Stat(filepath.Join(dir, "node0", "x")); !errors.Is(err, unix.ENOTCONN) {
		t.Errorf("stat through a dead mount: %v, want ENOTCONN", err)
	}
	removed, err := Cleanup(dir)
	if err != nil || len(removed) != 3 {
		t.Fatalf("Cleanup = %v, %v; want 2 mounts and the socket", removed, err)
	}
	if left := simfsMounts(t, dir); len(left) > 0 {
		t.Fatalf("mounts left after Cleanup: %+v", left)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("left in %s after Cleanup: %v", dir, entries)
	}
	f := startFS(t, Options{Dir: dir, Nodes: 2})
	if err := os.WriteFile(filepath.Join(f.Mounts()[1], "y"), nil, 0o644); err != nil {
		t.Fatalf("new simfs on the folder: %v", err)
	}
}
