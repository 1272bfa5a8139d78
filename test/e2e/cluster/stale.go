package cluster

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/internal/lptest"
)

// CleanStale ends what crashed runs left under BaseDir: for each cluster folder whose owning
// test process is gone it kills the processes naming the folder (node inits, and with them the
// nodes' pid namespaces; munged, slurmctld, sshd, FUSE clients), deletes the cluster's links and
// network namespaces (their names carry the cluster's ID) and removes the folder. Clusters of
// live test processes are left alone. GlusterFS daemons are package gluster's to clean.
func CleanStale(log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(BaseDir(), "c-*"))
	for _, d := range dirs {
		if lptest.OwnerAlive(d) {
			continue
		}
		id := strings.TrimPrefix(filepath.Base(d), "c-")
		log.Warn("cleaning up a crashed run's test cluster", "dir", d)
		killMatching(d, log)
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			if strings.HasPrefix(i.Name, prefix(id)) {
				_ = ip("link", "del", i.Name)
			}
		}
		nss, _ := filepath.Glob("/run/netns/" + prefix(id) + "-n*")
		for _, ns := range nss {
			_ = ip("netns", "del", filepath.Base(ns))
		}
		if err := os.RemoveAll(d); err != nil {
			log.Warn("removing stale cluster dir", "dir", d, "err", err)
		}
	}
}

// killMatching SIGKILLs every process whose command line names dir (after waking it, in case
// it is stopped). A node's init is one: its death ends every process of the node.
func killMatching(dir string, log *slog.Logger) {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cl, []byte(dir)) {
			continue
		}
		if !bytes.Contains(cl, []byte(dir+"/")) && !bytes.HasSuffix(bytes.TrimRight(cl, "\x00"), []byte(dir)) {
			continue
		}
		log.Warn("killing leftover cluster process", "pid", pid, "cmd", string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))
		_ = unix.Kill(pid, unix.SIGCONT)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// Leftovers lists what of cluster c still exists: processes naming its folder, its nodes'
// inits, its daemons, links and network namespaces of its ID, and its folder.
func Leftovers(c *Cluster) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || c.Dir == "" {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(cl, []byte(c.Dir+"/")) {
			out = append(out, fmt.Sprintf("process %d: %s", pid, bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))
		}
	}
	for _, n := range c.Nodes {
		if pid := n.InitPID(); pid != 0 && alive(pid) {
			out = append(out, fmt.Sprintf("node %s's init %d", n.Name, pid))
		}
	}
	for _, d := range c.daemons {
		if alive(d.cmd.Process.Pid) {
			out = append(out, fmt.Sprintf("%s %d", d.name, d.cmd.Process.Pid))
		}
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if c.ID != "" && strings.HasPrefix(i.Name, prefix(c.ID)) {
			out = append(out, "link "+i.Name)
		}
	}
	if c.ID != "" {
		nss, _ := filepath.Glob("/run/netns/" + prefix(c.ID) + "-n*")
		for _, ns := range nss {
			out = append(out, "network namespace "+filepath.Base(ns))
		}
	}
	if _, err := os.Stat(c.Dir); err == nil && c.Dir != "" {
		out = append(out, "folder "+c.Dir)
	}
	return out
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
