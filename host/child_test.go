package host

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The real tests re-execute the test binary as lock holders and waiters:
// lock semantics need separate processes (POSIX locks are per process).
const (
	childEnv     = "LOCKPROBE_HOST_TEST_CHILD" // "<kind> <role>"
	childFileEnv = "LOCKPROBE_HOST_TEST_FILE"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec, os.Getenv(childFileEnv)))
	}
	os.Exit(m.Run())
}

// runChild takes one lock and reports on stdout: "held TID FD" after a
// non-blocking grant, or "waiting TID FD" just before a blocking call and
// "granted" after it. It keeps the lock until stdin closes.
func runChild(spec, path string) int {
	kind, role, _ := strings.Cut(spec, " ")
	// The waiting thread's tid is reported so the parent can read its
	// wchan and stack: pin the goroutine to it.
	runtime.LockOSThread()
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	tid := unix.Gettid()
	wait := role == "waiter"
	if wait {
		fmt.Printf("waiting %d %d\n", tid, fd)
	}
	if err := lockFD(fd, kind, wait); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	if wait {
		fmt.Println("granted")
	} else {
		fmt.Printf("held %d %d\n", tid, fd)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

func lockFD(fd int, kind string, wait bool) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	switch kind {
	case "posix":
		cmd := unix.F_SETLK
		if wait {
			cmd = unix.F_SETLKW
		}
		return unix.FcntlFlock(uintptr(fd), cmd, &lk)
	case "ofd":
		cmd := unix.F_OFD_SETLK
		if wait {
			cmd = unix.F_OFD_SETLKW
		}
		return unix.FcntlFlock(uintptr(fd), cmd, &lk)
	case "flock":
		how := unix.LOCK_EX | unix.LOCK_NB
		if wait {
			how = unix.LOCK_EX
		}
		return unix.Flock(fd, how)
	}
	return fmt.Errorf("unknown lock kind %q", kind)
}

// child is a running helper process.
type child struct {
	pid, tid, fd int
	out          *bufio.Reader
}

// startChild starts a holder or waiter of kind on path and waits for its
// first report line. The process is killed when the test ends.
func startChild(t *testing.T, kind, role, path string) *child {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+kind+" "+role, childFileEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	c := &child{pid: cmd.Process.Pid, out: bufio.NewReader(stdout)}
	line, err := readLine(ctx, c.out)
	if err != nil {
		t.Fatalf("%s %s child: %v", kind, role, err)
	}
	var word string
	if _, err := fmt.Sscan(line, &word, &c.tid, &c.fd); err != nil {
		t.Fatalf("%s %s child said %q: %v", kind, role, line, err)
	}
	return c
}

// readLine reads one line, giving up when ctx ends.
func readLine(ctx context.Context, r *bufio.Reader) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := r.ReadString('\n')
		ch <- result{s, err}
	}()
	select {
	case res := <-ch:
		return strings.TrimSpace(res.s), res.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// waitFor polls cond until it holds or the test's minute is up.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}
