package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/internal/lptest"
)

// TestWhoAndWatchAcrossNodes is the cross-node hint of `lockprobe who` and `watch` on a real
// GlusterFS volume: a holder on node 0, a waiter on node 1, each node in its own pid namespace.
// Through node 1's client F_GETLK names the holder by a pid that is no process of node 1 (node
// 0's number, or 0 where FUSE finds no such task in node 1's namespace); who and watch run on
// node 1 must say that the holder is on another node and what to run there, and who on node 0
// must find the holder.
func TestWhoAndWatchAcrossNodes(t *testing.T) {
	c := start(t, Options{Nodes: 2, Gluster: true})
	ctx := testContext(t)
	bin := sharedBinary(t, c)
	helper := helperBinary(t, c)
	file := touch(t, c, "who.lock")
	n0, n1 := c.Nodes[0], c.Nodes[1]
	// Node 0 numbers the holder past every process node 1 has: the number names nobody there.
	if _, err := n0.Run(ctx, "sh", "-c", "i=0; while [ $i -lt 400 ]; do /bin/true; i=$((i+1)); done"); err != nil {
		t.Fatal(err)
	}
	holder := holdOn(t, ctx, n0, helper, file)
	if _, err := n1.Run(ctx, "test", "-e", "/proc/"+strconv.Itoa(holder)); err == nil {
		t.Fatalf("node 1 has a process %d too: the test needs a number only node 0 has", holder)
	}
	wait := n1.Command(ctx, "/usr/bin/python3", "-c", "import fcntl, sys; f = open(sys.argv[1], 'r+'); fcntl.lockf(f, fcntl.LOCK_EX)", file)
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = wait.Process.Kill(); _ = wait.Wait() }()

	type row struct {
		Role      string `json:"role"`
		PID       int    `json:"pid"`
		Mode      string `json:"mode"`
		BlockedBy int    `json:"blocked_by"`
		Command   string `json:"command"`
	}
	type view struct {
		Node      string   `json:"node"`
		Rows      []row    `json:"rows"`
		Elsewhere []string `json:"elsewhere"`
	}
	who := func(n *Node) view {
		out, err := n.Run(ctx, bin, "who", file, "-json")
		if err != nil {
			t.Fatal(err)
		}
		var vs []view
		if err := json.Unmarshal([]byte(out), &vs); err != nil || len(vs) != 1 {
			t.Fatalf("who -json on %s: %v\n%s", n.Name, err, out)
		}
		return vs[0]
	}
	var v view
	waiting := func() (bool, error) {
		v = who(n1)
		for _, r := range v.Rows {
			if r.Role == "waiter" && strings.Contains(r.Command, "lockf") {
				return true, nil
			}
		}
		return false, nil
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := lptest.WaitUntil(wctx, 200*time.Millisecond, "the waiter in who's rows on node 1", waiting); err != nil {
		t.Fatalf("%v: %+v", err, v)
	}
	var waiter row
	for _, r := range v.Rows {
		if r.Role == "waiter" {
			waiter = r
		}
		if r.Role == "holder" {
			t.Errorf("who on node 1 shows a holder on node 1: %+v", r)
		}
	}
	if waiter.Mode != "write" || (waiter.BlockedBy != holder && waiter.BlockedBy != 0) {
		t.Errorf("waiter row %+v: want a write request blocked by pid %d (node 0's number) or 0", waiter, holder)
	}
	hint := strings.Join(v.Elsewhere, "\n")
	if v.Node != n1.Name || !strings.Contains(hint, "lockprobe who "+file) || !strings.Contains(hint, "no process of "+n1.Name) &&
		!strings.Contains(hint, "a process "+n1.Name+" does not have") {
		t.Errorf("who on node 1 does not send the user to the other nodes:\n%s", hint)
	}
	t.Logf("F_GETLK on %s names the holder (pid %d on %s) pid %d; who says: %s", n1.Name, holder, n0.Name, waiter.BlockedBy, hint)

	// watch on node 1: the waiter is stuck behind a holder of another node.
	out := filepath.Join(c.Dir, "run", "watch-out")
	wres := n1.Command(ctx, bin, "watch", "-tracer", "none", "-file", file, "-for", "0", "-out", out)
	text, err := wres.CombinedOutput()
	if code := wres.ProcessState.ExitCode(); code != 4 {
		t.Fatalf("watch on node 1: exit %d (%v), want 4\n%s", code, err, text)
	}
	b, err := os.ReadFile(filepath.Join(out, "verdict.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vj struct {
		Verdict struct {
			Class, Summary string
		} `json:"verdict"`
	}
	if err := json.Unmarshal(b, &vj); err != nil {
		t.Fatal(err)
	}
	if vj.Verdict.Class != "foreign-holder" || !strings.Contains(vj.Verdict.Summary, "lockprobe who "+file) ||
		!strings.Contains(vj.Verdict.Summary, "another node") {
		t.Errorf("watch on node 1: %s: %s", vj.Verdict.Class, vj.Verdict.Summary)
	}

	// who on node 0 finds the holder.
	v0 := who(n0)
	found := false
	for _, r := range v0.Rows {
		found = found || r.Role == "holder" && r.PID == holder && r.Mode == "write"
	}
	if !found {
		t.Errorf("who on node 0 does not show holder pid %d: %+v", holder, v0.Rows)
	}
}

// holdOn starts the test binary's helper on node n holding a write lock on file until the test
// ends, and returns its pid as n numbers it.
func holdOn(t *testing.T, ctx context.Context, n *Node, helper, file string) int {
	t.Helper()
	hold := n.Command(ctx, helper)
	hold.Env = append(hold.Env, helperEnv+"=hold "+file)
	stdin, _ := hold.StdinPipe()
	stdout, _ := hold.StdoutPipe()
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = hold.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	var holder int
	if _, err := fmt.Sscanf(line, "held pid=%d", &holder); err != nil {
		t.Fatalf("holder on %s said %q", n.Name, line)
	}
	return holder
}
