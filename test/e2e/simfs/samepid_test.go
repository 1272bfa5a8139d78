package simfs

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
)

// samePID: lockers 1 (node 1) and 2 (node 0) hold bytes 0 and 1; locker 0 (node 0) waits for
// byte 0 from +1s, until both let go at +3s.
const samePID = `# description: two holders on two nodes with the same pid; a waiter asks who holds byte 0
procs 3
all: file@{file}
1: write@+0s range=0:1
2: write@+0s range=1:1
1: release@+3s
2: release@+3s
0: write@+1s range=0:1 style=wait
0: release
all: stop
`

// TestSamePIDOnTwoNodes: lockers 1 and 2 run on two nodes, each in a pid namespace of its own as
// on its own machine, so both are pid 1. F_GETLK through simfs answers, as Lustre does, the
// holder's pid on its own node: 1. The waiter's own node has a locker with pid 1 too (locker 2),
// which holds nothing on byte 0, and the waiter's watcher takes it for the owner (a pid names a
// process of the answering node first); the analysis maps the owner by what each node's locker
// held: locker 1.
func TestSamePIDOnTwoNodes(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux) for the nodes' pid namespaces")
	}
	s := startSimfs(t, 2)
	files := s.files(t, "samepid")
	port := freePort(t)
	endpoint := "tcp://127.0.0.1:" + strconv.Itoa(port)
	const token = "samepid-test-token"
	r := startRun(t, files, samePID, "-timeout", "10s", "-remote", "2", "-listen", endpoint, "-token", token, "-startup-timeout", "30s")
	// Locker i uses file i % 2, the mount of node i % 2, named as the controller names the
	// nodes of its own lockers: the waiter and locker 2 are on one node.
	host, _ := os.Hostname()
	for _, id := range []int{1, 2} {
		cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", bin, "locker",
			"-connect", endpoint, "-id", strconv.Itoa(id), "-node", fmt.Sprintf("%s/client%d", host, id%2), "-allow", files[id%2])
		cmd.Env = append(os.Environ(), "LOCKPROBE_TOKEN="+token)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("remote locker %d still running 10s after the run", id)
			}
			if out.Len() > 0 {
				t.Logf("remote locker %d: %s", id, out.String())
			}
		})
	}
	r.wait(t)
	r.expect(t, "healthy", 0)
	for _, id := range []int64{1, 2} {
		if pid := pidOf(t, r.trace, id); pid != 1 {
			t.Fatalf("locker %d has pid %d, want 1 (its own pid namespace)", id, pid)
		}
	}
	for _, a := range spans(r.trace, semconv.SpanAcquire) {
		for _, e := range a.Events {
			if e.Name == semconv.EventConflict {
				t.Logf("locker %d's watcher recorded owner pid %d as locker %d (%s)", lockerOf(a),
					e.Attrs.IntOr(semconv.LockOwnerPID, 0), e.Attrs.IntOr(semconv.LockOwnerLockerID, -1), e.Attrs.Str(semconv.LockOwnerClass))
			}
		}
	}
	var asked int
	for _, a := range r.res.Attempts {
		if a.Locker != 0 {
			continue
		}
		for _, c := range a.Conflicts {
			if c.Owner.Class == semconv.OwnerNone {
				continue
			}
			asked++
			if c.Owner.PID != 1 || c.Owner.Locker != 1 || c.Owner.Node != host+"/client1" {
				t.Errorf("locker 0's conflict owner %+v: want pid 1 mapped to locker 1 on %s/client1", c.Owner, host)
			}
		}
	}
	if asked == 0 {
		t.Errorf("locker 0 recorded no conflict owner while it waited")
	}
	if strings.Contains(r.stdout.String(), "foreign") || strings.Contains(r.stdout.String(), "stale") {
		t.Errorf("the summary names a foreign or stale holder:\n%s", r.stdout.String())
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
