package simfs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// F_GETLK on Lustre names the holder by its pid on its own node, with no node id, so pids
// collide across nodes. simfs's nodes are mounts on one host, where pids are unique — unless the
// lockers of each node run in a pid namespace of their own, as they would on their own machines.
// viewPID answers with the holder's pid as its own namespace numbers it.
//
// The kernel gets in the way: FUSE turns the pid a file system answers into a task of the
// daemon's namespace and then into the caller's (fs/fuse/file.c convert_fuse_file_lock,
// fs/locks.c locks_translate_pid), and a number that names no task there becomes 0. So the
// answer must be a pid, in simfs's namespace, of a task that the caller's namespace numbers as
// the holder's local pid: the holder itself when the caller shares its namespace, the number
// itself when the caller is in simfs's namespace, else whichever task of the caller's namespace
// has that number. When none has, the caller reads 0: a FUSE limit that Lustre does not have.

// nsPID returns pid's number in its innermost pid namespace (the last NSpid field of its
// status) and that namespace's identity.
func nsPID(pid uint32) (uint32, string) {
	dir := filepath.Join("/proc", strconv.FormatUint(uint64(pid), 10))
	ns, _ := os.Readlink(filepath.Join(dir, "ns", "pid"))
	b, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return pid, ns
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			if n, err := strconv.ParseUint(f[len(f)-1], 10, 32); err == nil {
				return uint32(n), ns
			}
		}
	}
	return pid, ns
}

// viewPID returns what simfs answers in F_GETLK for a lock of holder asked about by caller.
func viewPID(holder, caller uint32) uint32 {
	local, hns := nsPID(holder)
	if local == holder {
		return holder
	}
	_, cns := nsPID(caller)
	if cns == hns {
		return holder
	}
	self, _ := os.Readlink("/proc/self/ns/pid")
	if cns == self {
		return local
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		n, err := strconv.ParseUint(filepath.Base(d), 10, 32)
		if err != nil {
			continue
		}
		if l, ns := nsPID(uint32(n)); ns == cns && l == local {
			return uint32(n)
		}
	}
	return local
}
