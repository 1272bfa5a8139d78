package probe

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLockThreadNice: the lock thread runs above the rest of the locker when the host allows it
// (as root: lockThreadNice), and what it says it runs with is what the kernel says of that
// thread — not of the process, whose other threads (the sender, the watcher) keep theirs. Told
// to keep its priority (run -keep-priority), it runs with the process's.
func TestLockThreadNice(t *testing.T) {
	for _, raise := range []bool{true, false} {
		before := otherThreadNice(t)
		lt := startLockThread(raise)
		got := threadNice(t, lt.tid)
		close(lt.work)
		if lt.nice != got {
			t.Errorf("raise %v: lock thread says nice %d, the kernel %d", raise, lt.nice, got)
		}
		want := before
		if raise && os.Geteuid() == 0 {
			want = lockThreadNice
		}
		if got != want {
			t.Errorf("raise %v (euid %d): the lock thread runs at nice %d, want %d", raise, os.Geteuid(), got, want)
		}
		if after := otherThreadNice(t); after != before {
			t.Errorf("raise %v: another thread's nice went from %d to %d with the lock thread's", raise, before, after)
		}
	}
}

// otherThreadNice is the nice value of a thread of this process other than a lock thread.
func otherThreadNice(t *testing.T) int {
	t.Helper()
	nice := make(chan int)
	go func() {
		runtime.LockOSThread() // a thread of its own, ended with the goroutine
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", unix.Gettid()))
		if err != nil {
			nice <- -100
			return
		}
		nice <- statNice(b)
	}()
	n := <-nice
	if n == -100 {
		t.Fatal("no stat of the thread")
	}
	return n
}

// threadNice reads a thread's nice value from /proc.
func threadNice(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		t.Fatal(err)
	}
	return statNice(b)
}

// statNice is field 19 of a stat line (counted from 1; the third, the state, follows "pid (comm) ").
func statNice(b []byte) int {
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, err := strconv.Atoi(fields[16])
	if err != nil {
		return -100
	}
	return n
}
