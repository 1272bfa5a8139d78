package host

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FDFile says which file descriptor fd of process pid refers to: the link's target and the
// file's identity (stat through /proc/PID/fd/FD follows the magic link to the open file, also
// when its path was renamed or removed). Another user's process needs ptrace access.
func FDFile(pid, fd int) (path string, id FileID, size int64, err error) {
	link := fmt.Sprintf("/proc/%d/fd/%d", pid, fd)
	path, err = os.Readlink(link)
	if err != nil {
		return "", FileID{}, 0, fmt.Errorf("host: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(link, &st); err != nil {
		return path, FileID{}, 0, fmt.Errorf("host: stat %s: %w", link, err)
	}
	return path, statID(&st), st.Size, nil
}

// FDPos reads the file offset of descriptor fd of process pid from its fdinfo.
func FDPos(pid, fd int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return 0, fmt.Errorf("host: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "pos:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("host: no pos in fdinfo %d/%d", pid, fd)
}

// Cmdline reads a process's argv; nil if it is gone or a kernel thread.
func Cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// ProcessExists reports whether pid is a process of this node (in this pid namespace).
func ProcessExists(pid int) bool {
	if pid <= 0 {
		return false
	}
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// ReadMem reads n bytes at addr of process pid through /proc/PID/mem, which needs ptrace
// access to the process (same user without yama restrictions, or CAP_SYS_PTRACE) but does not
// stop it.
func ReadMem(pid int, addr uint64, n int) ([]byte, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		return nil, fmt.Errorf("host: read %d bytes at %#x of process %d: %w", n, addr, pid, err)
	}
	return b, nil
}

// Opener is one descriptor of a process that refers to a watched file.
type Opener struct {
	PID, FD int
	File    FileID
	Path    string
}

// ErrNotYours marks a process whose descriptors this user may not read.
var ErrNotYours = errors.New("not readable by this user")

// OpenersOf lists the descriptors of processes pids (every process when pids is empty) that
// refer to one of files. Processes that vanish while being read are skipped; with an explicit
// list, one whose /proc/PID/fd cannot be read is an error wrapping os.ErrNotExist or ErrNotYours.
func OpenersOf(pids []int, files []FileID) ([]Opener, error) {
	all := len(pids) == 0
	if all {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return nil, fmt.Errorf("host: %w", err)
		}
		for _, e := range ents {
			if pid, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	want := map[FileID]bool{}
	for _, f := range files {
		want[f] = true
	}
	var out []Opener
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			if all {
				continue
			}
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("host: process %d: %w", pid, os.ErrNotExist)
			}
			if errors.Is(err, os.ErrPermission) {
				return nil, fmt.Errorf("host: process %d: %w", pid, ErrNotYours)
			}
			return nil, fmt.Errorf("host: %w", err)
		}
		for _, e := range ents {
			fd, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			var st unix.Stat_t
			if err := unix.Stat(dir+"/"+e.Name(), &st); err != nil {
				continue
			}
			id := statID(&st)
			if !want[id] {
				continue
			}
			path, _ := os.Readlink(dir + "/" + e.Name())
			out = append(out, Opener{PID: pid, FD: fd, File: id, Path: path})
		}
	}
	return out, nil
}
