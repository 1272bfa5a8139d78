package host

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcState is what the kernel says a thread is doing: enough to tell a
// waiter sleeping in the lock code from one that is running or gone.
type ProcState struct {
	PID, TID int
	// Comm is the thread's command name (may hold spaces and parentheses).
	Comm string
	// State is the stat state letter: R running, S sleeping, D
	// uninterruptible, T stopped, Z zombie, ...
	State string
	PPID  int
	// Wchan is the kernel function the thread sleeps in ("" or "0" when
	// running). Kernels without CONFIG_KALLSYMS show only "0".
	Wchan string
	// Syscall is /proc/.../syscall: the syscall number and arguments the
	// thread is blocked in ("72 0x3 0x7 ..." is fcntl(3, F_SETLKW) on
	// x86_64), "running", or empty if unreadable.
	Syscall string
	// Stack is the kernel stack, innermost first, one "function+off/len"
	// per line with the "[<0>] " prefix removed.
	Stack []string
	// Notes say which of Wchan, Syscall and Stack could not be read and
	// why (the stack needs root or CAP_SYS_ADMIN).
	Notes []string
}

// ReadProcess reads the state of thread tid of process pid. Only a missing
// or unreadable stat file is an error; wchan, syscall and stack are best
// effort, with a note when unreadable. tid 0 means the main thread.
func ReadProcess(pid, tid int) (ProcState, error) {
	if tid == 0 {
		tid = pid
	}
	ps := ProcState{PID: pid, TID: tid}
	dir := fmt.Sprintf("/proc/%d/task/%d/", pid, tid)
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return ps, fmt.Errorf("host: process %d thread %d: %w", pid, tid, err)
	}
	if err := parseStat(string(stat), &ps); err != nil {
		return ps, fmt.Errorf("host: %sstat: %w", dir, err)
	}
	if b, err := os.ReadFile(dir + "wchan"); err != nil {
		ps.Notes = append(ps.Notes, fmt.Sprintf("wchan: %v", err))
	} else {
		ps.Wchan = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(dir + "syscall"); err != nil {
		ps.Notes = append(ps.Notes, fmt.Sprintf("syscall: %v", err))
	} else {
		ps.Syscall = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(dir + "stack"); err != nil {
		ps.Notes = append(ps.Notes, fmt.Sprintf("stack: %v", err))
	} else {
		ps.Stack = parseStack(string(b))
	}
	return ps, nil
}

// ReadThreads reads every thread of process pid. A thread that exits while
// being read is skipped.
func ReadThreads(pid int) ([]ProcState, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("host: threads of %d: %w", pid, err)
	}
	var out []ProcState
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ps, err := ReadProcess(pid, tid)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, ps)
	}
	return out, nil
}

// Children lists the processes pid forked that are still its children, in the order the kernel
// lists them: /proc/PID/task/TID/children holds what each thread forked (a process's threads
// fork apart), read for every thread. A process that is gone has none.
func Children(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue // the thread ended since the directory was read
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// parseStat parses "pid (comm) S ppid ...". comm is taken up to the last
// ')' because it may itself contain ") ".
func parseStat(s string, ps *ProcState) error {
	open := strings.IndexByte(s, '(')
	closing := strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return fmt.Errorf("no (comm) in %q", s)
	}
	ps.Comm = s[open+1 : closing]
	rest := strings.Fields(s[closing+1:])
	if len(rest) < 2 || len(rest[0]) != 1 {
		return fmt.Errorf("no state and ppid after comm in %q", s)
	}
	ps.State = rest[0]
	ppid, err := strconv.Atoi(rest[1])
	if err != nil {
		return fmt.Errorf("ppid %q: %w", rest[1], err)
	}
	ps.PPID = ppid
	return nil
}

// parseStack turns "[<0>] fcntl_setlk+0x1a/0x300\n" lines into
// "fcntl_setlk+0x1a/0x300".
func parseStack(s string) []string {
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[<") {
			if i := strings.Index(line, ">]"); i >= 0 {
				line = strings.TrimSpace(line[i+2:])
			}
		}
		out = append(out, line)
	}
	return out
}

// BlockedInLocks reports whether the thread's wchan or stack names the
// kernel's file locking code: a cheap sign that it waits for a lock.
func (ps *ProcState) BlockedInLocks() bool {
	if isLockFunc(ps.Wchan) {
		return true
	}
	for _, f := range ps.Stack {
		if isLockFunc(f) {
			return true
		}
	}
	return false
}

// lockFuncs are substrings of the kernel functions a lock waiter sleeps
// in: fs/locks.c (seen on 6.18: fcntl_setlk for F_SETLKW and F_OFD_SETLKW,
// locks_lock_inode_wait for flock) and the lock paths of network and FUSE
// file systems (Lustre ldlm, NFS lockd/v4, FUSE, CIFS, Ceph).
var lockFuncs = []string{
	"fcntl_setlk", "lock_inode_wait", "lock_file_wait", "do_sys_flock",
	"posix_lock", "flock_lock", "ldlm_", "ll_file_flock", "nlmclnt_",
	"nfs4_proc_lock", "nfs4_retry_setlk", "fuse_setlk", "cifs_lock", "ceph_lock",
}

func isLockFunc(f string) bool {
	name, _, _ := strings.Cut(f, "+")
	for _, l := range lockFuncs {
		if strings.Contains(name, l) {
			return true
		}
	}
	return false
}

// WaitingThread picks, of a process's threads, the one a hang report should show: the first
// waiting in the kernel's lock code or in uninterruptible sleep (a call stuck in a FUSE or
// network file system), else the first thread. threads must not be empty.
func WaitingThread(threads []ProcState) ProcState {
	for _, t := range threads {
		if t.BlockedInLocks() || t.State == "D" {
			return t
		}
	}
	return threads[0]
}
