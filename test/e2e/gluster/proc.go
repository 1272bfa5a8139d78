package gluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/internal/lptest"
)

// CleanStale ends what crashed runs left under BaseDir: for each daemon
// directory whose owning test process is gone it SIGCONTs and kills the
// glusterfs clients, unmounts (lazily if busy) its mounts, kills its bricks
// and glusterd, and removes the directory. Daemons of live test processes
// are left alone.
func CleanStale(log *slog.Logger) {
	base := BaseDir()
	dirs, _ := filepath.Glob(filepath.Join(base, "d-*"))
	live := map[string]bool{}
	for _, d := range dirs {
		if lptest.OwnerAlive(d) {
			live[d] = true
		}
	}
	// Processes first: a directory may be gone while its processes run.
	for _, p := range glusterProcs() {
		d := daemonDirOf(p.cmdline, base)
		if d == "" || live[d] {
			continue
		}
		log.Warn("ending stale gluster process", "pid", p.pid, "cmd", p.cmdline)
		killPID(p.pid)
	}
	for _, m := range mountsUnder(base) {
		if live[daemonDirOf(m, base)] {
			continue
		}
		log.Warn("unmounting stale gluster mount", "dir", m)
		if _, err := unmount(m); err != nil {
			log.Warn("unmounting stale gluster mount", "dir", m, "err", err)
		}
	}
	for _, d := range dirs {
		if live[d] {
			continue
		}
		removeBrickFiles(d)
		if err := os.RemoveAll(d); err != nil {
			log.Warn("removing stale gluster dir", "dir", d, "err", err)
		}
	}
}

// daemonDirOf returns the daemon directory (BaseDir()/d-*) named in s.
func daemonDirOf(s, base string) string {
	i := strings.Index(s, base+"/d-")
	if i < 0 {
		return ""
	}
	rest := s[i+len(base)+1:]
	if j := strings.IndexAny(rest, "/ \x00"); j >= 0 {
		rest = rest[:j]
	}
	return filepath.Join(base, rest)
}

type proc struct {
	pid     int
	cmdline string
}

// glusterProcs lists the glusterd, glusterfsd and glusterfs processes with
// their command lines (NULs turned to spaces).
func glusterProcs() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !strings.HasPrefix(string(comm), "gluster") {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		out = append(out, proc{pid, strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))})
	}
	return out
}

// killMatching kills every gluster process whose command line names dir.
func killMatching(dir string, log *slog.Logger) {
	for _, p := range glusterProcs() {
		if strings.Contains(p.cmdline, dir+"/") || strings.HasSuffix(p.cmdline, dir) {
			log.Warn("killing leftover gluster process", "pid", p.pid, "cmd", p.cmdline)
			killPID(p.pid)
		}
	}
}

// killPID wakes a possibly stopped process and kills it.
func killPID(pid int) {
	_ = unix.Kill(pid, unix.SIGCONT)
	_ = unix.Kill(pid, unix.SIGKILL)
}

// alive tells whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// mountsUnder returns the mount points in /proc/mounts below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		// /proc/mounts escapes spaces as \040; our paths have none.
		if mp := fields[1]; strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// unmount unmounts dir, lazily when it is busy (a locker still has a file
// open in it) or its client is gone, and tells whether it had to be lazy.
func unmount(dir string) (lazy bool, err error) {
	err = unix.Unmount(dir, 0)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return false, nil // EINVAL, ENOENT: not a mount point (any more)
	}
	if err2 := unix.Unmount(dir, unix.MNT_DETACH); err2 != nil && !errors.Is(err2, unix.EINVAL) {
		return true, fmt.Errorf("unmounting %s: %w (lazy: %v)", dir, err, err2)
	}
	return true, nil
}

// removeBrickFiles removes the brick logs glusterd writes under
// /var/log/glusterfs/bricks for bricks below dir: their names are the brick
// path with '/' turned to '-'.
func removeBrickFiles(dir string) {
	prefix := strings.ReplaceAll(strings.TrimPrefix(dir, "/"), "/", "-")
	logs, _ := filepath.Glob(filepath.Join("/var/log/glusterfs/bricks", prefix+"-*.log"))
	for _, l := range logs {
		_ = os.Remove(l)
	}
}
