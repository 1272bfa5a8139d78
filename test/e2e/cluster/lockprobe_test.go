package cluster

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/launch"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// lockprobe runs across the nodes of the test cluster: each locker a task of a Slurm job step
// (or an ssh session) inside its node, with the node's own host name and pid namespace, the
// volume mounted through the node's own GlusterFS client.

// touch creates the run's file on the volume, through every node: each node then has started
// as many processes as the others, and the first tasks of a step get one pid number on all.
func touch(t *testing.T, c *Cluster, name string) string {
	t.Helper()
	file := filepath.Join(c.Mount, name)
	for _, n := range c.Nodes {
		if _, err := n.Run(testContext(t), "touch", file); err != nil {
			t.Fatal(err)
		}
	}
	return file
}

// checkContend checks a healthy contend run of n lockers laid out over the nodes as spread
// says: every locker granted once, no two write holds overlapping, every locker on its node in
// the trace and in verdict.json and the report.
func checkContend(t *testing.T, c *Cluster, r *lpRun, n int, spread launch.Spread) {
	t.Helper()
	r.expect(t, "healthy", 0)
	place := launch.Place(n, len(c.Nodes), spread)
	grants := map[int64]int{}
	for _, a := range spansNamed(r.trace, semconv.SpanAcquire) {
		if a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted.String() {
			grants[lockerID(a)]++
		}
	}
	holds := spansNamed(r.trace, semconv.SpanHold)
	sort.Slice(holds, func(i, j int) bool { return holds[i].Start < holds[j].Start })
	for i, h := range holds {
		for _, g := range holds[i+1:] {
			if g.Start < h.End {
				t.Errorf("write holds overlap: locker %d [%d, %d] and locker %d [%d, %d]", lockerID(h), h.Start, h.End, lockerID(g), g.Start, g.End)
			}
		}
	}
	nodes := map[int64]string{}
	for _, s := range spansNamed(r.trace, semconv.SpanLocker) {
		nodes[lockerID(s)] = nodeOf(s)
	}
	for id := range int64(n) {
		want := c.Nodes[place[id]].Name
		if grants[id] != 1 {
			t.Errorf("locker %d granted %d times, want once", id, grants[id])
		}
		if nodes[id] != want {
			t.Errorf("locker %d on node %q in the trace, want %s", id, nodes[id], want)
		}
	}
	for _, l := range r.verdict.Lockers {
		if want := c.Nodes[place[l.ID]].Name; l.Node != want {
			t.Errorf("verdict.json: locker %d on %q, want %s", l.ID, l.Node, want)
		}
	}
	html, err := os.ReadFile(filepath.Join(r.out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.Nodes {
		if !strings.Contains(string(html), nd.Name) {
			t.Errorf("report.html does not name node %s", nd.Name)
		}
	}
	if len(r.verdict.Hosts) != len(c.Nodes) {
		t.Errorf("verdict.json has %d hosts, want one per node", len(r.verdict.Hosts))
	}
	for _, h := range r.verdict.Hosts {
		if h.ClockUncertaintyNS <= 0 {
			t.Errorf("node %s has no measured clock bound", h.Node)
		}
	}
}

// Case 1: contend with 12 lockers over 3 nodes through -launcher slurm, inside an allocation
// (salloc -N3 lockprobe ...). The binary is below this host's /tmp, which no node sees: it is
// copied with sbcast, and the summary says so. The token (given here, so that it can be
// looked for) appears on no command line but the controller's own.
func TestSlurmContend(t *testing.T) {
	c := start(t, Options{Slurm: true, Gluster: true})
	file := touch(t, c, "contend.lock")
	token := "tok" + strings.Repeat("9", 20)
	r := c.start(t, nil, "salloc", append([]string{"-N3", lockprobeBinary(t)},
		runArgs(t, c, file, "-procs", "12", "-launcher", "slurm", "-timeout", "30s", "-token", token)...)...)
	leaks := watchCommandLines(r, token)
	r.wait(t)
	checkContend(t, c, r, 12, launch.Block)
	if l := leaks(); len(l) > 0 {
		t.Errorf("the token is on these command lines:\n%s", strings.Join(l, "\n"))
	}
	if !strings.Contains(r.stdout.String(), "binary: copied with sbcast to /tmp/lockprobe-") || r.verdict.Run.Launcher != "slurm" {
		t.Errorf("the summary does not say the binary was copied with sbcast:\n%s", r.stdout.String())
	}
	c.assertNothingLeft(t, 10*time.Second)
}

// Case 6: the same through -launcher ssh, one session per member, round-robin over the nodes
// (-spread cyclic). The binary is not on the nodes: it is copied with scp. The token goes down
// the sessions' input, on no command line.
func TestSSHContend(t *testing.T) {
	c := start(t, Options{SSH: true, Gluster: true})
	file := touch(t, c, "contend.lock")
	hosts := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		hosts[i] = n.Name
	}
	token := "tok" + strings.Repeat("8", 20)
	r := c.start(t, nil, lockprobeBinary(t), runArgs(t, c, file, "-procs", "12", "-launcher", "ssh", "-hosts", strings.Join(hosts, ","),
		"-ssh-config", c.SSHConfig, "-spread", "cyclic", "-timeout", "30s", "-token", token)...)
	leaks := watchCommandLines(r, token)
	r.wait(t)
	checkContend(t, c, r, 12, launch.Cyclic)
	if !strings.Contains(r.stdout.String(), "binary: copied with scp to /tmp/lockprobe-") {
		t.Errorf("the summary does not say the binary was copied with scp:\n%s", r.stdout.String())
	}
	if l := leaks(); len(l) > 0 {
		t.Errorf("the token is on these command lines:\n%s", strings.Join(l, "\n"))
	}
	c.assertNothingLeft(t, 10*time.Second)
}

// Case 2: the holder on node 0, the waiter on node 1 (node= targets), both the first task on
// their node and so the same pid number. F_GETLK through node 1 gives the holder's pid as node
// 1's kernel reads it: the waiter's own number, or 0. The owner is the locker on node 0, not a
// process of node 1. lockprobe makes its own allocation (-nodes 2, no salloc).
func TestSamePIDAcrossNodes(t *testing.T) {
	c := start(t, Options{Slurm: true, Gluster: true})
	file := touch(t, c, "samepid.lock")
	sc := scenarioFile(t, "procs 2\nall: file@{file}\nnode=0: write@+0s\nnode=0: sleep 2s\nnode=0: release\nnode=1: write@+500ms\nnode=1: release\n")
	r := c.start(t, nil, lockprobeBinary(t), runArgs(t, c, file, "-scenario", sc, "-launcher", "slurm", "-nodes", "2", "-timeout", "30s")...)
	r.wait(t)
	r.expect(t, "healthy", 0)
	pids := map[int64]int64{}
	for _, s := range spansNamed(r.trace, semconv.SpanLocker) {
		pids[lockerID(s)] = s.Resource.IntOr(semconv.ProcessPID, -1)
	}
	if pids[0] != pids[1] || pids[0] <= 0 {
		t.Fatalf("lockers' pids %v: want one number on both nodes (the first task of a step on each)", pids)
	}
	res := r.analyse(t)
	conflicts := 0
	for _, a := range res.Attempts {
		if a.Locker != 1 {
			continue
		}
		for _, cf := range a.Conflicts {
			if cf.Owner.Class == semconv.OwnerNone {
				continue
			}
			conflicts++
			if cf.Owner.Locker != 0 || cf.Owner.Class != semconv.OwnerLocker || cf.Owner.Node != c.Nodes[0].Name {
				t.Errorf("the waiter's conflict owner (F_GETLK said pid %d) is %s locker %d on %q, want locker 0 on %s",
					cf.Owner.PID, cf.Owner.Class, cf.Owner.Locker, cf.Owner.Node, c.Nodes[0].Name)
			}
			t.Logf("F_GETLK on %s said pid %d (both lockers are pid %d): owner locker %d on %s", c.Nodes[1].Name, cf.Owner.PID, pids[0], cf.Owner.Locker, cf.Owner.Node)
		}
	}
	if conflicts == 0 {
		t.Error("the waiter recorded no conflict owner")
	}
	c.assertNothingLeft(t, 10*time.Second)
}

// Case 3: AB/BA over two byte ranges, one locker on each node: a deadlock (GlusterFS detects
// none), and the cycle names both nodes. The binary is in the cluster's folder, which every node
// sees at the same path: it is used where it is.
func TestCrossNodeDeadlock(t *testing.T) {
	c := start(t, Options{Slurm: true, Gluster: true})
	file := touch(t, c, "abba.lock")
	bin := sharedBinary(t, c)
	r := c.start(t, nil, "salloc", append([]string{"-N2", bin},
		runArgs(t, c, file, "-scenario", "abba", "-procs", "2", "-launcher", "slurm", "-timeout", "30s")...)...)
	r.wait(t)
	r.expect(t, "deadlock", 3)
	if !strings.Contains(r.stdout.String(), "binary: shared path "+bin) {
		t.Errorf("the summary does not say the binary's path was shared:\n%s", r.stdout.String())
	}
	s := r.verdict.Verdict.Summary
	for _, n := range c.Nodes[:2] {
		if !strings.Contains(s, n.Name) {
			t.Errorf("the deadlock's summary does not name node %s: %s", n.Name, s)
		}
	}
	c.assertNothingLeft(t, 10*time.Second)
}

// Case 4: the holder's node is cut off (GlusterFS with fast keepalive options) until the brick
// gives the lock to the waiter on the other node, then healed. Exclusion is violated; the
// finding has the partition as evidence, nothing node 0's locker recorded while cut off is lost,
// and (GlusterFS without strict-locks) its later unlock succeeds, which the report says.
func TestPartitionThenHeal(t *testing.T) {
	c := start(t, Options{Slurm: true, Gluster: true, GlusterSet: FastKeepalive})
	file := touch(t, c, "partition.lock")
	sc := scenarioFile(t, "procs 2\nall: file@{file}\nnode=0: write@+0s\nnode=0: sleep 12s\nnode=0: release\nnode=1: write@+1s\nnode=1: release\n")
	r := c.start(t, nil, "salloc", append([]string{"-N2", lockprobeBinary(t)},
		runArgs(t, c, file, "-scenario", sc, "-launcher", "slurm", "-timeout", "45s", "-stuck-after", "30s")...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := watch(ctx, r.out, granted(0)); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	if err := c.Nodes[0].Partition(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Nodes[0].Heal() })
	if err := watch(ctx, r.out, granted(1)); err != nil {
		t.Fatal(err)
	}
	t.Logf("the waiter on node 1 was granted %v after node 0 was cut off", time.Since(cut).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	if err := c.Nodes[0].Heal(); err != nil {
		t.Fatal(err)
	}
	t.Logf("node 0 healed after %v", time.Since(cut).Round(time.Millisecond))
	r.wait(t)
	r.expect(t, "exclusion-violated", 5)
	s := r.verdict.Verdict.Summary
	for _, want := range []string{"node " + c.Nodes[0].Name + ", where locker 0 held the lock, was cut off", "never learned that it had lost the lock"} {
		if !strings.Contains(s, want) {
			t.Errorf("the verdict does not say %q: %s", want, s)
		}
	}
	fromController := false
	for _, e := range r.verdict.Findings[0].Evidence {
		fromController = fromController || e.Source == "controller" && strings.Contains(e.Text, c.Nodes[0].Name)
	}
	if !fromController {
		t.Errorf("the finding does not cite node 0's silence: %+v", r.verdict.Findings[0].Evidence)
	}
	if r.verdict.Run.MessagesLost != 0 {
		t.Errorf("%d messages lost; a partition that heals loses nothing", r.verdict.Run.MessagesLost)
	}
	var hold *tracefile.Span
	for _, h := range spansNamed(r.trace, semconv.SpanHold) {
		if lockerID(h) == 0 {
			hold = h
		}
	}
	if hold == nil || hold.Attrs.Str(semconv.LockHoldEnd) != semconv.HoldRelease.String() {
		t.Errorf("locker 0's hold %v: want it ended by its own unlock, recorded while cut off and delivered after the heal", hold)
	}
	silent := false
	for _, h := range r.verdict.Hosts {
		for _, sl := range h.Silences {
			silent = silent || h.Node == c.Nodes[0].Name && sl.Healed
		}
	}
	if !silent {
		t.Errorf("verdict.json's hosts do not show node 0's healed silence: %+v", r.verdict.Hosts)
	}
	c.assertNothingLeft(t, 15*time.Second)
}

// Case 5: a node that never comes back. The run ends at its timeout plus a bounded grace with
// what arrived, names the silent node, and cancels the Slurm step; once the node is back (the
// test heals it after the run), nothing of the run is left on it.
func TestNodeNeverReturns(t *testing.T) {
	c := start(t, Options{Slurm: true, Gluster: true, GlusterSet: FastKeepalive})
	file := touch(t, c, "gone.lock")
	sc := scenarioFile(t, "procs 2\nall: file@{file}\nall: write@+0s\nall: release\nnode=1: sleep 60s\n")
	timeout := 8 * time.Second
	r := c.start(t, nil, "salloc", append([]string{"-N2", lockprobeBinary(t)},
		runArgs(t, c, file, "-scenario", sc, "-launcher", "slurm", "-timeout", timeout.String())...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := watch(ctx, r.out, granted(1)); err != nil {
		t.Fatal(err)
	}
	if err := c.Nodes[1].Partition(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Nodes[1].Heal() })
	r.wait(t)
	if r.verdict == nil || r.verdict.Run.EndReason != "timeout" {
		t.Fatalf("run: %+v, want it ended by its timeout\nstderr: %s", r.verdict, tail(r.stderr.String(), 4000))
	}
	if bound := timeout + 30*time.Second; r.wall > bound {
		t.Errorf("the run took %v; a node that never returns must not hold it past %v", r.wall, bound)
	}
	if want := "node " + c.Nodes[1].Name + " silent from "; !strings.Contains(r.stdout.String(), want) || !strings.Contains(r.stdout.String(), "never heard again") {
		t.Errorf("the summary does not name the silent node (%q ... never heard again):\n%s", want, r.stdout.String())
	}
	if want := "node " + c.Nodes[1].Name + " was never heard again"; !strings.Contains(r.verdict.Verdict.Summary, want) {
		t.Errorf("the verdict %q does not say that it rests on a partial trace (%q)", r.verdict.Verdict.Summary, want)
	}
	if !strings.Contains(r.stderr.String(), `msg="job step cancelled"`) {
		t.Errorf("the Slurm step was not cancelled:\n%s", tail(r.stderr.String(), 4000))
	}
	if err := c.Nodes[1].Heal(); err != nil {
		t.Fatal(err)
	}
	c.assertNothingLeft(t, 30*time.Second)
}

// Case 7: bad input, each refused with one line and exit status 2, nothing left running.
func TestBadInput(t *testing.T) {
	c := start(t, Options{Slurm: true, SSH: true})
	bin := lockprobeBinary(t)
	// A file on the nodes' own /tmp, on nodes 0 and 2 only.
	local := "/tmp/lockprobe-only-some-nodes"
	for _, n := range []*Node{c.Nodes[0], c.Nodes[2]} {
		if _, err := n.Run(testContext(t), "touch", local); err != nil {
			t.Fatal(err)
		}
	}
	noSlurm := t.TempDir()
	tests := []struct {
		name string
		env  []string
		cmd  []string
		want string
	}{
		{"no srun on PATH", []string{"PATH=" + noSlurm}, append([]string{bin}, runArgs(t, c, local, "-launcher", "slurm", "-nodes", "2")...), "srun not found on PATH"},
		{"no allocation and no -nodes", nil, append([]string{bin}, runArgs(t, c, local, "-launcher", "slurm")...), "no Slurm allocation"},
		{"a node where the file is missing", nil, append([]string{"salloc", "-N3", bin}, runArgs(t, c, local, "-launcher", "slurm", "-procs", "3")...),
			"node " + c.Nodes[1].Name + ": locker 1: -allow " + local},
		{"a host that refuses ssh", nil, append([]string{bin}, runArgs(t, c, local, "-launcher", "ssh", "-hosts", c.Nodes[0].Name+","+c.Addr, "-ssh-config", c.SSHConfig)...),
			"node " + c.Addr + ": ssh: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.start(t, tt.env, tt.cmd[0], tt.cmd[1:]...)
			r.wait(t)
			if r.code != 2 {
				t.Errorf("exit status %d, want 2\nstderr: %s", r.code, r.stderr.String())
			}
			oneLine(t, r, tt.want)
			c.assertNothingLeft(t, 10*time.Second)
		})
	}
}

// TestInterruptCancelsTheStep: Ctrl-C (SIGINT to lockprobe) in the middle of a run across nodes
// ends it as an interrupted run, and neither its job step, nor the allocation lockprobe made
// (-nodes 2), nor any locker is left.
func TestInterruptCancelsTheStep(t *testing.T) {
	c := start(t, Options{Slurm: true, Gluster: true})
	file := touch(t, c, "interrupt.lock")
	r := c.start(t, nil, lockprobeBinary(t), runArgs(t, c, file, "-scenario", "hold", "-procs", "3", "-launcher", "slurm", "-nodes", "2", "-timeout", "60s")...)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := watch(ctx, r.out, granted(0)); err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
	if r.verdict == nil || r.verdict.Run.EndReason != "interrupted" {
		t.Errorf("run %+v: want it ended as interrupted", r.verdict)
	}
	if r.wall > 30*time.Second {
		t.Errorf("the run took %v after Ctrl-C", r.wall)
	}
	c.assertNothingLeft(t, 10*time.Second)
}
