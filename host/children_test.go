package host

import (
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestChildren: a child forked from a thread other than the main one is listed too (a Go
// process forks from whichever thread runs the goroutine; the main thread's children file
// alone does not list it), and an ended child is not.
func TestChildren(t *testing.T) {
	c, err := startOffMain("sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	if got := Children(os.Getpid()); !slices.Contains(got, c.Process.Pid) {
		t.Errorf("Children(self) = %v, want %d among them", got, c.Process.Pid)
	}
	_ = c.Process.Kill()
	_ = c.Wait()
	if got := Children(os.Getpid()); slices.Contains(got, c.Process.Pid) {
		t.Errorf("Children(self) = %v after %d was reaped", got, c.Process.Pid)
	}
	if got := Children(1 << 30); got != nil {
		t.Errorf("Children of no process = %v, want none", got)
	}
}

// startOffMain starts a command from a thread that is not the process's main one: a locked
// goroutine that finds itself on the main thread keeps it and asks again from another.
func startOffMain(name string, args ...string) (*exec.Cmd, error) {
	type started struct {
		c   *exec.Cmd
		err error
	}
	done := make(chan started)
	var try func()
	try = func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if unix.Gettid() == os.Getpid() {
			inner := make(chan struct{})
			go func() { try(); close(inner) }()
			<-inner // hold the main thread until the other has forked
			return
		}
		c := exec.Command(name, args...)
		done <- started{c, c.Start()}
	}
	go try()
	s := <-done
	return s.c, s.err
}
