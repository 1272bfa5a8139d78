package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/internal/lptest"
)

// helperEnv makes the test binary a small helper instead of running tests, inside a node:
// "dial ADDR", "hold PATH" (a whole-file write lock until stdin closes), "getlk PATH [PID]"
// (with PID: also whether this node has a task of that number, just before and after the call).
const helperEnv = "LOCKPROBE_CLUSTER_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(strings.Fields(h)))
	}
	flag.Parse()
	code := m.Run()
	if lpDir != "" {
		_ = os.RemoveAll(lpDir) // the lockprobe binary the tests built
	}
	os.Exit(code)
}

func helper(args []string) int {
	if len(args) != 2 && (len(args) != 3 || args[0] != "getlk") {
		fmt.Println("helper: want VERB ARG")
		return 2
	}
	switch args[0] {
	case "dial":
		c, err := net.DialTimeout("tcp", args[1], 2*time.Second)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		c.Close()
		fmt.Println("dial: ok")
		return 0
	case "hold", "getlk":
		f, err := os.OpenFile(args[1], os.O_RDWR, 0)
		if err != nil {
			fmt.Println("open:", err)
			return 2
		}
		defer f.Close()
		if args[0] == "hold" {
			lk := unix.Flock_t{Type: unix.F_WRLCK}
			if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
				fmt.Println("setlk:", err)
				return 1
			}
			fmt.Printf("held pid=%d\n", os.Getpid())
			_, _ = io.Copy(io.Discard, os.Stdin)
			return 0
		}
		// A task of this node, thread ids included (the kernel's lookup counts them: this
		// helper's own Go threads may carry the holder's number).
		present := func() int {
			if len(args) < 3 {
				return -1
			}
			if _, err := os.Stat("/proc/" + args[2]); err != nil {
				return 0
			}
			return 1
		}
		before := present()
		q := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &q); err != nil {
			fmt.Println("getlk:", err)
			return 1
		}
		after := present()
		fmt.Printf("getlk type=%d pid=%d self=%d present=%d,%d\n", q.Type, q.Pid, os.Getpid(), before, after)
		return 0
	}
	fmt.Println("helper: unknown verb", args[0])
	return 2
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// start builds a cluster for a test and checks after its teardown that nothing of it is left.
func start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a test cluster (namespaces, daemons)")
	}
	var c *Cluster
	t.Cleanup(func() {
		if c == nil {
			return
		}
		if left := Leftovers(c); len(left) > 0 {
			t.Errorf("cluster Close left behind:\n%s", strings.Join(left, "\n"))
		}
	})
	t0 := time.Now()
	c, err := Start(testContext(t), t, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster %s up in %v (bridge %s %s)", c.ID, time.Since(t0).Round(time.Millisecond), c.Bridge, c.Addr)
	return c
}

// helperBinary copies the test binary into the cluster's folder, which the nodes see (the
// binary itself lives below /tmp, which they do not).
func helperBinary(t *testing.T, c *Cluster) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return copyIntoCluster(t, c, exe, "helper")
}

// copyIntoCluster copies an executable into the cluster's folder, which the nodes see.
func copyIntoCluster(t *testing.T, c *Cluster, src, name string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c.Dir, "run", name)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSrunHostnames(t *testing.T) {
	c := start(t, Options{Slurm: true})
	ctx := testContext(t)
	out, err := c.Command(ctx, "srun", "-N3", "hostname").CombinedOutput()
	if err != nil {
		t.Fatalf("srun -N3 hostname: %v: %s", err, out)
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	var want []string
	for _, n := range c.Nodes {
		want = append(want, n.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("srun -N3 hostname printed %q, want the three node names %q", got, want)
	}
}

// TestPIDsCollide: every node numbers its processes on its own, so the tasks of one step get
// the same pid on every node; and F_GETLK through GlusterFS on node 1 answers the holder's pid
// as node 0 numbers it, read in node 1's pid namespace (0 where node 1 has no such process).
func TestPIDsCollide(t *testing.T) {
	c := start(t, Options{Slurm: true, Gluster: true})
	ctx := testContext(t)
	out, err := c.Command(ctx, "srun", "-N3", "-l", "sh", "-c", "echo $$").CombinedOutput()
	if err != nil {
		t.Fatalf("srun: %v: %s", err, out)
	}
	pids := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		_, pid, _ := strings.Cut(l, ": ")
		pids[pid] = true
	}
	if len(pids) != 1 {
		t.Errorf("the step's tasks got pids %v on three nodes, want one number on all: %s", pids, out)
	}

	helper := helperBinary(t, c)
	file := filepath.Join(c.Mount, "pids.lock")
	if _, err := c.Nodes[0].Run(ctx, "touch", file); err != nil {
		t.Fatal(err)
	}
	holder := holdOn(t, ctx, c.Nodes[0], helper, file)
	q := c.Nodes[1].Command(ctx, helper)
	q.Env = append(q.Env, fmt.Sprintf("%s=getlk %s %d", helperEnv, file, holder))
	got, err := q.CombinedOutput()
	if err != nil {
		t.Fatalf("getlk on node 1: %v: %s", err, got)
	}
	var typ, pid, self, before, after int
	if _, err := fmt.Sscanf(string(got), "getlk type=%d pid=%d self=%d present=%d,%d", &typ, &pid, &self, &before, &after); err != nil {
		t.Fatalf("getlk on node 1 said %q", got)
	}
	// The kernel reads the answer's pid in node 1's pid namespace: the holder's number when node 1
	// has a task of that number (an unrelated one, or a thread of the asker itself), else 0.
	if typ != unix.F_WRLCK {
		t.Errorf("F_GETLK on node 1: type %d, want a write lock (%d)", typ, unix.F_WRLCK)
	}
	switch {
	case before != after:
		t.Logf("node 1's task %d came or went during the call: the answer %d is not checked", holder, pid)
	case before == 1 && pid != holder:
		t.Errorf("F_GETLK on node 1 says pid %d; node 1 has a task %d, so want node 0's number %d", pid, holder, holder)
	case before == 0 && pid != 0:
		t.Errorf("F_GETLK on node 1 says pid %d; node 1 has no task %d, so want 0", pid, holder)
	}
	t.Logf("holder pid %d on node 0; F_GETLK on node 1 (itself pid %d there; task %d present: %d) says pid %d", holder, self, holder, before, pid)
	// The root namespace does not see the volume at all.
	var st unix.Statfs_t
	if err := unix.Statfs(c.Mount, &st); err != nil || st.Type == 0x65735546 {
		t.Errorf("the volume is mounted in the root namespace too (statfs type %#x, %v)", st.Type, err)
	}
}

// dialFrom tries a TCP connection to addr from node n (the helper inside it) or, with n nil,
// from the root namespace.
func dialFrom(ctx context.Context, c *Cluster, helper string, n *Node, addr string) error {
	if n == nil {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}
	cmd := n.Command(ctx, helper)
	cmd.Env = append(cmd.Env, helperEnv+"=dial "+addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s", strings.TrimSpace(string(out)))
	}
	return nil
}

// TestPartitionCutsOneNode: with node 1 partitioned, nobody reaches it and it reaches nobody,
// silently (a timeout, not a refusal), while nodes 0 and 2 reach each other; after the heal
// everything answers again.
func TestPartitionCutsOneNode(t *testing.T) {
	c := start(t, Options{Slurm: true})
	ctx := testContext(t)
	helper := helperBinary(t, c)
	slurmd := func(n *Node) string { return net.JoinHostPort(n.Addr, "6818") }
	n0, n1, n2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	for _, n := range c.Nodes {
		if err := dialFrom(ctx, c, helper, nil, slurmd(n)); err != nil {
			t.Fatalf("before the partition: %v", err)
		}
	}
	if err := n1.Partition(); err != nil {
		t.Fatal(err)
	}
	silent := func(err error) bool {
		var ne net.Error
		return err != nil && (errors.As(err, &ne) && ne.Timeout() || strings.Contains(err.Error(), "timeout"))
	}
	if err := dialFrom(ctx, c, helper, nil, slurmd(n1)); !silent(err) {
		t.Errorf("root → partitioned node 1: %v, want a timeout", err)
	}
	if err := dialFrom(ctx, c, helper, n0, slurmd(n1)); !silent(err) {
		t.Errorf("node 0 → partitioned node 1: %v, want a timeout", err)
	}
	if err := dialFrom(ctx, c, helper, n1, slurmd(n2)); !silent(err) {
		t.Errorf("partitioned node 1 → node 2: %v, want a timeout", err)
	}
	if err := dialFrom(ctx, c, helper, n0, slurmd(n2)); err != nil {
		t.Errorf("node 0 → node 2 during node 1's partition: %v", err)
	}
	if err := dialFrom(ctx, c, helper, nil, net.JoinHostPort(n0.Addr, "6818")); err != nil {
		t.Errorf("root → node 0 during node 1's partition: %v", err)
	}
	if err := n1.Heal(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err := lptest.WaitUntil(ctx, 100*time.Millisecond, "node 1 after the heal", func() (bool, error) {
		return dialFrom(ctx, c, helper, n1, slurmd(n0)) == nil && dialFrom(ctx, c, helper, nil, slurmd(n1)) == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node 1 reachable %v after the heal", time.Since(t0).Round(time.Millisecond))
}

func TestSSH(t *testing.T) {
	c := start(t, Options{SSH: true})
	ctx := testContext(t)
	for _, n := range c.Nodes {
		t0 := time.Now()
		out, err := c.Command(ctx, "ssh", "-F", c.SSHConfig, n.Name, "hostname").CombinedOutput()
		t.Logf("ssh %s hostname: %v", n.Name, time.Since(t0).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("ssh %s hostname: %v: %s", n.Name, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != n.Name {
			t.Errorf("ssh %s hostname printed %q", n.Name, got)
		}
	}
}

// TestCloseLeavesNothing builds a cluster with every part and checks that Close takes it all.
func TestCloseLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a test cluster")
	}
	ctx := testContext(t)
	c, err := New(ctx, Options{Slurm: true, SSH: true, Gluster: true})
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	// A step left running is ended with its node.
	sleep := c.Command(ctx, "srun", "-N3", "sleep", "600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	if err := c.Close(); err != nil {
		t.Error(err)
	}
	t.Logf("teardown: %v", time.Since(t0).Round(time.Millisecond))
	if left := Leftovers(c); len(left) > 0 {
		t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
	}
}

// TestCleanStale plays a crashed run: a cluster whose owner file names a process that is gone
// is ended by the next CleanStale, and a live cluster beside it is not touched.
func TestCleanStale(t *testing.T) {
	live := start(t, Options{Slurm: true})
	ctx := testContext(t)
	dead, err := New(ctx, Options{Slurm: true, SSH: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead.Dir, "owner"), []byte("1 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	CleanStale(slog.Default())
	if left := Leftovers(dead); len(left) > 0 {
		t.Errorf("CleanStale left behind:\n%s", strings.Join(left, "\n"))
	}
	_ = dead.Close() // nothing left to do; its errors are those of a cluster already gone
	if out, err := live.Command(ctx, "srun", "-N3", "true").CombinedOutput(); err != nil {
		t.Errorf("the live cluster beside it no longer works: %v: %s", err, out)
	}
	if alive := slices.ContainsFunc(live.Nodes, func(n *Node) bool { return !alive(n.InitPID()) }); alive {
		t.Error("CleanStale ended a node of a live cluster")
	}
}
