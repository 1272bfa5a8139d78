package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/internal/lptest"
)

// Node is one node of a cluster.
type Node struct {
	Index int
	// Name is the node's host name (its UTS namespace), its Slurm NodeName and its ssh alias.
	Name string
	// Addr is the node's address on the cluster's network.
	Addr string
	// NetNS is the node's network namespace (/run/netns/NetNS).
	NetNS string

	hostLink string
	c        *Cluster
	cmd      *exec.Cmd // nsenter, which execs unshare
	exited   chan struct{}
	initPID  int // the node's pid 1, as the root namespace numbers it
}

// initScript is a node's pid 1. The fields: host name, FUSE client command (or empty), sshd
// command (or empty), slurmd command (or empty). Commands are written by this package, quoted.
const initScript = `#!/bin/sh
# init of a lockprobe test cluster node (test/e2e/cluster): pid 1 of the node's pid namespace.
cd /
hostname %s
# The copies of the root namespace's FUSE and namespace mounts would keep other runs' file
# systems and network namespaces alive for as long as this node lives.
awk '$0 ~ / - (fuse|fuseblk|fuse\.[^ ]+|nsfs) / {print $5}' /proc/self/mountinfo | sort -r |
	while read -r m; do umount -l "$m" 2>/dev/null; done
# Node-local /tmp (sbcast's destination) and /run (sshd's privilege separation folder).
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd
pids=
%s
%s
%s
# A pid 1 gets only the signals it handles: forward SIGTERM to the daemons, then wait for them.
trap 'kill -TERM $pids 2>/dev/null' TERM INT
echo ready
while :; do
	wait
	alive=
	for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
	[ -n "$alive" ] || break
done
`

// start writes the node's init and starts it inside the node's namespaces.
func (n *Node) start() error {
	c := n.c
	var gl, sshd, slurmd string
	if c.opts.Gluster {
		gl = fmt.Sprintf("glusterfs -N --process-name fuse --volfile-server=%s --volfile-id=%s -l %s %s &\npids=\"$pids $!\"",
			c.Addr, c.Volume.Volume, shq(filepath.Join(c.Dir, "log", n.Name+"-fuse.log")), shq(c.Mount))
	}
	if c.opts.SSH {
		// sshd re-executes itself, which it does only from an absolute path.
		bin, err := exec.LookPath("sshd")
		if err != nil {
			return err
		}
		sshd = fmt.Sprintf("%s -D -e -f %s -o ListenAddress=%s 2>>%s &\npids=\"$pids $!\"",
			shq(bin), shq(c.sshdConfig()), n.Addr, shq(filepath.Join(c.Dir, "log", n.Name+"-sshd.log")))
	}
	if c.opts.Slurm {
		slurmd = fmt.Sprintf("slurmd -D -N %s -f %s &\npids=\"$pids $!\"", n.Name, shq(c.slurmConf()))
	}
	script := filepath.Join(c.Dir, "run", n.Name+"-init.sh")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(initScript, n.Name, gl, sshd, slurmd)), 0o755); err != nil {
		return fmt.Errorf("node init: %w", err)
	}
	logf, err := os.Create(filepath.Join(c.Dir, "log", n.Name+"-init.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	n.cmd = exec.Command("nsenter", "--net=/run/netns/"+n.NetNS, "unshare", "--uts", "--mount", "--pid",
		"--fork", "--mount-proc", "--kill-child=SIGKILL", "sh", script)
	n.cmd.Dir = "/"
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	// A test process that dies takes its nodes with it (unshare's --kill-child does the rest).
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("starting node %s: %w", n.Name, err)
	}
	n.exited = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	return nil
}

// waitReady waits until the node's init (the child unshare forks) runs and its mount and sshd
// answer; slurmd's registration is the cluster's to wait for (waitSlurmNodes).
func (n *Node) waitReady(ctx context.Context) error {
	c := n.c
	return lptest.WaitUntil(ctx, 20*time.Millisecond, "node "+n.Name, func() (bool, error) {
		select {
		case <-n.exited:
			return false, fmt.Errorf("node %s's init exited; see %s", n.Name, filepath.Join(c.Dir, "log", n.Name+"-init.log"))
		default:
		}
		if n.initPID == 0 {
			n.initPID = firstChild(n.cmd.Process.Pid)
			if n.initPID == 0 {
				return false, nil
			}
		}
		if c.opts.Gluster && !n.mounted(c.Mount) {
			return false, nil
		}
		if c.opts.SSH {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(n.Addr, "22"), time.Second)
			if err != nil {
				return false, nil
			}
			conn.Close()
		}
		return true, nil
	})
}

// mounted tells whether the node's mount namespace has a FUSE mount at dir, read from the
// root namespace through the init's /proc entry.
func (n *Node) mounted(dir string) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", n.initPID))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[4] != dir {
			continue
		}
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") {
				return true
			}
		}
	}
	return false
}

// InitPID is the node's pid 1 as the root namespace numbers it: the process that nsenter -t
// enters, and whose death ends the node.
func (n *Node) InitPID() int { return n.initPID }

// Command returns a command that runs inside the node's namespaces (network, UTS, mount, PID),
// with the cluster's environment.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	all := append([]string{"-t", strconv.Itoa(n.initPID), "-n", "-u", "-m", "-p", "--", name}, args...)
	cmd := n.c.Command(ctx, "nsenter", all...)
	return cmd
}

// Run runs a command inside the node and returns its combined output.
func (n *Node) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s on %s: %w: %s", name, n.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Partition cuts the node off the cluster's network silently: the host side of its veth goes
// down, so what it sends is lost and its own link still looks up.
func (n *Node) Partition() error { return ip("link", "set", n.hostLink, "down") }

// Heal reconnects a partitioned node and flushes its neighbour table, whose entries failed
// while it was cut off and would answer "no route to host" for a while.
func (n *Node) Heal() error {
	if err := ip("link", "set", n.hostLink, "up"); err != nil {
		return err
	}
	return ip("-n", n.NetNS, "neigh", "flush", "all")
}

// stop ends the node: SIGTERM to its init, which forwards it to the daemons and waits for them;
// SIGKILL after a grace period. When the init dies the kernel kills every process of the node's
// pid namespace, and its mounts go with its mount namespace.
func (n *Node) stop() error {
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	if n.initPID != 0 {
		_ = unix.Kill(n.initPID, unix.SIGTERM)
	} else {
		_ = n.cmd.Process.Kill()
	}
	select {
	case <-n.exited:
		return nil
	case <-time.After(5 * time.Second):
	}
	n.c.log.Warn("node did not stop on SIGTERM; killing it", "node", n.Name)
	if n.initPID != 0 {
		_ = unix.Kill(n.initPID, unix.SIGKILL)
	}
	_ = n.cmd.Process.Kill()
	select {
	case <-n.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("node %s (init %d) did not exit after SIGKILL", n.Name, n.initPID)
	}
}

// firstChild returns the first child of pid, or 0.
func firstChild(pid int) int {
	if c := host.Children(pid); len(c) > 0 {
		return c[0]
	}
	return 0
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
