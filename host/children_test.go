package host

import (
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
)

// TestChildren: a child forked from a thread other than the main one is listed too (a Go
// process forks from whichever thread runs the goroutine), and an ended child is not.
func TestChildren(t *testing.T) {
	done := make(chan *exec.Cmd)
	go func() {
		runtime.LockOSThread() // a thread of its own, not the main one
		defer runtime.UnlockOSThread()
		c := exec.Command("sleep", "30")
		if err := c.Start(); err != nil {
			t.Error(err)
			c = nil
		}
		done <- c
	}()
	c := <-done
	if c == nil {
		return
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
