package gluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/internal/lptest"
)

// helperEnv makes the test binary act as a one-shot lock client instead of
// running tests: a separate process, as a lock owner must be.
const helperEnv = "LOCKPROBE_GLUSTER_HELPER"

var (
	shared    *Daemon
	sharedErr error
)

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(helper(path))
	}
	flag.Parse()
	if !testing.Short() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		shared, sharedErr = StartDaemon(ctx, DaemonOptions{})
		cancel()
	}
	code := m.Run()
	if shared != nil {
		if err := shared.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing shared glusterd:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// helper tries a whole-file write lock on path without waiting, asks
// F_GETLK about the range, and prints "setlk=ERRNO getlk=TYPE pid=PID".
func helper(path string) int {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		fmt.Println("open:", err)
		return 2
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	var errno unix.Errno
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil && !errors.As(err, &errno) {
		fmt.Println("setlk:", err)
		return 2
	}
	q := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &q); err != nil {
		fmt.Println("getlk:", err)
		return 2
	}
	fmt.Printf("setlk=%d getlk=%d pid=%d\n", int(errno), q.Type, q.Pid)
	return 0
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// runHelper runs the helper against path and returns its output line.
func runHelper(ctx context.Context, t *testing.T, path string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestCrossMountConflict(t *testing.T) {
	if testing.Short() {
		t.Skip("starts GlusterFS")
	}
	ctx := testContext(t)
	c, err := Use(t, shared, sharedErr).NewCluster(ctx, t, Options{Mounts: 2})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(c.Mounts[0], "data.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The brick records the calling thread's id, so lock from a known one.
	tid := make(chan int, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
			t.Errorf("lock through mount 0: %v", err)
		}
		tid <- unix.Gettid()
	}()
	lockTID := <-tid

	// Through the other mount the lock conflicts, and F_GETLK names this
	// process by its pid.
	got := runHelper(ctx, t, filepath.Join(c.Mounts[1], "data.lock"))
	var setlk, typ, pid int
	if _, err := fmt.Sscanf(got, "setlk=%d getlk=%d pid=%d", &setlk, &typ, &pid); err != nil {
		t.Fatalf("helper said %q: %v", got, err)
	}
	if e := unix.Errno(setlk); e != unix.EAGAIN && e != unix.EACCES {
		t.Errorf("F_SETLK through mount 1: errno %d (%v), want EAGAIN or EACCES", setlk, e)
	}
	if typ != unix.F_WRLCK || pid != os.Getpid() {
		t.Errorf("F_GETLK through mount 1: type %d pid %d, want %d pid %d", typ, pid, unix.F_WRLCK, os.Getpid())
	}

	locks, err := c.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 1 {
		t.Fatalf("brick shows %d locks, want 1: %+v", len(locks), locks)
	}
	l := locks[0]
	if l.Blocked || l.Mode != "WRITE" || l.Path != "/data.lock" || l.PID != int64(lockTID) || c.MountOf(l.ClientPID) != 0 {
		t.Errorf("brick lock %+v; want ACTIVE WRITE /data.lock pid %d client %d", l, lockTID, c.ClientPID(0))
	}
	// The lock is the brick's file; the brick directory shows it.
	if _, err := os.Stat(filepath.Join(c.Brick, "data.lock")); err != nil {
		t.Error(err)
	}
}

func TestRemountAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts GlusterFS")
	}
	ctx := testContext(t)
	c, err := Use(t, shared, sharedErr).NewCluster(ctx, t, Options{Mounts: 1})
	if err != nil {
		t.Fatal(err)
	}
	old := c.ClientPID(0)
	if err := unix.Kill(old, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// A mount whose client died answers ENOTCONN until it is replaced.
	err = lptest.WaitUntil(ctx, 20*time.Millisecond, "ENOTCONN", func() (bool, error) {
		_, err := os.Stat(c.Mounts[0])
		return errors.Is(err, unix.ENOTCONN), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Remount(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if c.ClientPID(0) == old || alive(old) {
		t.Errorf("client %d still there after Remount (new %d)", old, c.ClientPID(0))
	}
	if err := os.WriteFile(filepath.Join(c.Mounts[0], "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// leftovers lists what of dir is still there: mounts, gluster processes
// naming it, the given pids, and the directory itself.
func leftovers(dir string, pids ...int) []string {
	var out []string
	for _, m := range mountsUnder(dir) {
		out = append(out, "mount "+m)
	}
	for _, p := range glusterProcs() {
		if strings.Contains(p.cmdline, dir) {
			out = append(out, fmt.Sprintf("process %d %s", p.pid, p.cmdline))
		}
	}
	for _, pid := range pids {
		if alive(pid) {
			out = append(out, fmt.Sprintf("pid %d alive", pid))
		}
	}
	if _, err := os.Stat(dir); err == nil {
		out = append(out, "dir "+dir)
	}
	return out
}

// TestCloseLeavesNothing starts a private glusterd next to the shared one,
// stops one client as the lost-wake-up test will, and checks that Close
// leaves no mount, process or directory behind.
func TestCloseLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts GlusterFS")
	}
	ctx := testContext(t)
	t0 := time.Now()
	c, err := Start(ctx, t, Options{Mounts: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("glusterd + volume + 2 mounts: %v", time.Since(t0).Round(time.Millisecond))
	if len(c.Mounts) != 2 || c.ClientPID(0) == 0 || c.ClientPID(1) == 0 || c.ClientPID(0) == c.ClientPID(1) {
		t.Fatalf("mounts %v clients %d %d", c.Mounts, c.ClientPID(0), c.ClientPID(1))
	}
	// A file held open in a mount makes the unmount lazy.
	f, err := os.Create(filepath.Join(c.Mounts[1], "busy"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Kill(c.ClientPID(1), unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	pids := []int{c.ClientPID(0), c.ClientPID(1), c.d.cmd.Process.Pid}
	t1 := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("teardown: %v", time.Since(t1).Round(time.Millisecond))
	if left := leftovers(c.d.Dir, pids...); len(left) > 0 {
		t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
	}
}

// TestCleanStale plays a crashed run: a daemon whose owner file names a
// process that is gone must be ended by the next CleanStale.
func TestCleanStale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts GlusterFS")
	}
	ctx := testContext(t)
	d, err := StartDaemon(ctx, DaemonOptions{})
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.newCluster(ctx, Options{Mounts: 1})
	if err != nil {
		t.Fatal(errors.Join(err, d.Close()))
	}
	pids := []int{c.ClientPID(0), d.cmd.Process.Pid}
	if err := os.WriteFile(filepath.Join(d.Dir, "owner"), []byte("1 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	CleanStale(slog.Default())
	if left := leftovers(d.Dir, pids...); len(left) > 0 {
		t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
	}
	// The shared daemon belongs to a live process and must have survived.
	if shared != nil && !alive(shared.cmd.Process.Pid) {
		t.Error("CleanStale ended the shared glusterd")
	}
	// Close after the cleanup finds nothing to do but must not hang; its
	// errors (glusterd is gone) are expected.
	_ = c.Close()
	_ = d.Close()
}
