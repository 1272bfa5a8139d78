package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// The lockprobe binary is built once per test binary below os.TempDir(), which the nodes do not
// see (each has its own /tmp): a run with it must copy it to the nodes (sbcast, scp). A test
// that wants the shared path copies it into the cluster's folder (sharedBinary).
var (
	lpOnce sync.Once
	lpDir  string
	lpPath string
	lpErr  error
)

func lockprobeBinary(t *testing.T) string {
	t.Helper()
	lpOnce.Do(func() {
		if lpDir, lpErr = os.MkdirTemp("", "lockprobe-cluster-bin-"); lpErr != nil {
			return
		}
		lpPath, lpErr = lptest.BuildLockprobe(lpDir, lptest.Package)
	})
	if lpErr != nil {
		t.Fatal(lpErr)
	}
	return lpPath
}

// sharedBinary copies the binary into the cluster's folder, which every node sees at the same
// path: the launcher must use it where it is.
func sharedBinary(t *testing.T, c *Cluster) string {
	t.Helper()
	return copyIntoCluster(t, c, lockprobeBinary(t), "lockprobe")
}

// runGuard is how long a test lets one lockprobe run take before it calls it hung.
const runGuard = 90 * time.Second

// lpRun is one `lockprobe run` (possibly inside salloc) against the cluster.
type lpRun struct {
	out            string
	cmd            *exec.Cmd
	cancel         context.CancelFunc
	stdout, stderr bytes.Buffer
	started        time.Time
	wall           time.Duration
	code           int
	verdict        *lptest.Verdict
	trace          *tracefile.Trace
}

// scenarioFile writes a scenario text into the test's folder (below /tmp: the controller reads
// it, the nodes need not).
func scenarioFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "scenario.lps")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// start starts name args... (lockprobe, or salloc wrapping it) with the cluster's environment
// and returns at once. A run that hangs gets SIGQUIT (its goroutines go to stderr), then SIGKILL.
func (c *Cluster) start(t *testing.T, env []string, name string, args ...string) *lpRun {
	t.Helper()
	r := &lpRun{}
	for i, a := range args {
		if a == "-out" && i+1 < len(args) {
			r.out = args[i+1]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), runGuard)
	r.cancel = cancel
	r.cmd = exec.CommandContext(ctx, name, args...)
	r.cmd.Env = append(c.Env(), env...)
	r.cmd.Dir = "/"
	r.cmd.Cancel = func() error { return r.cmd.Process.Signal(unix.SIGQUIT) }
	r.cmd.WaitDelay = 5 * time.Second
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	r.started = time.Now()
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = r.cmd.Wait() })
	t.Logf("%s %s", name, strings.Join(args, " "))
	return r
}

// runArgs are the arguments of a lockprobe run writing to a fresh output folder.
func runArgs(t *testing.T, c *Cluster, file string, args ...string) []string {
	all := []string{"run", "-file", file, "-out", filepath.Join(t.TempDir(), "out"), "-v"}
	if c.GlusterSocket != "" {
		all = append(all, "-gluster-sock", c.GlusterSocket)
	}
	return append(all, args...)
}

// wait waits for the run to end and reads its verdict and trace, when it wrote them.
func (r *lpRun) wait(t *testing.T) {
	t.Helper()
	code, err := lptest.ExitCode(r.cmd.Wait())
	r.cancel()
	r.wall, r.code = time.Since(r.started), code
	if err != nil {
		t.Fatalf("lockprobe: %v\nstderr: %s", err, r.stderr.String())
	}
	if r.wall >= runGuard {
		t.Errorf("the run did not end within %s: killed; its stderr:\n%s", runGuard, tail(r.stderr.String(), 20000))
	}
	t.Logf("ended after %s with status %d; stdout:\n%s", r.wall.Round(time.Millisecond), r.code, r.stdout.String())
	if r.out == "" {
		return
	}
	if v, err := lptest.ReadVerdict(r.out); err == nil {
		r.verdict = v
	}
	if tr, err := tracefile.Open(r.out); err == nil {
		r.trace = tr
	}
}

// expect checks the verdict class and the exit status.
func (r *lpRun) expect(t *testing.T, class string, code int) {
	t.Helper()
	got := ""
	if r.verdict != nil {
		got = r.verdict.Verdict.Class
	}
	if got != class || r.code != code {
		t.Fatalf("verdict %q, status %d; want %s, exit %d\nstdout: %s\nstderr: %s", got, r.code, class, code, r.stdout.String(), tail(r.stderr.String(), 4000))
	}
}

// analyse runs the analysis on the run's trace, as `lockprobe analyze` would.
func (r *lpRun) analyse(t *testing.T) *analysis.Result {
	t.Helper()
	if r.trace == nil {
		t.Fatal("the run wrote no trace")
	}
	return analysis.Analyze(r.trace, analysis.Options{})
}

// spansNamed returns the trace's spans of one name.
func spansNamed(tr *tracefile.Trace, name string) []*tracefile.Span {
	var out []*tracefile.Span
	for _, s := range tr.Spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// The trace helpers shared with the other end-to-end packages.
var (
	lockerID = lptest.LockerID
	nodeOf   = lptest.Node
	watch    = lptest.Watch
)

// granted says whether locker id has a granted attempt in the trace.
func granted(id int64) func(*tracefile.Trace) bool {
	return func(tr *tracefile.Trace) bool {
		for _, a := range spansNamed(tr, semconv.SpanAcquire) {
			if lockerID(a) == id && a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted.String() {
				return true
			}
		}
		return false
	}
}

// nodeLockers lists the locker processes left in the cluster's nodes (their pid namespaces):
// `... locker ...` processes, whatever binary path they were started from.
func nodeLockers(c *Cluster) []string {
	nss := map[string]string{}
	for _, n := range c.Nodes {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", n.InitPID())); err == nil {
			nss[ns] = n.Name
		}
	}
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err != nil || nss[ns] == "" || !alive(pid) {
			continue
		}
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cl), "\x00")
		if len(args) > 1 && args[1] == "locker" && strings.Contains(args[0], "lockprobe") {
			out = append(out, fmt.Sprintf("%s: pid %d %s", nss[ns], pid, strings.Join(args, " ")))
		}
	}
	return out
}

// steps lists the Slurm job steps and jobs still known to slurmctld.
func (c *Cluster) steps(ctx context.Context) []string {
	if !c.opts.Slurm {
		return nil
	}
	var out []string
	for _, args := range [][]string{{"-h", "-s", "-o", "%i %j %T"}, {"-h", "-o", "%i %j %T"}} {
		b, _ := c.Command(ctx, "squeue", args...).Output()
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

// assertNothingLeft fails the test when a locker runs on a node, or a job or step is still
// known, once a short grace (processes being reaped, a step completing) has passed.
func (c *Cluster) assertNothingLeft(t *testing.T, grace time.Duration) {
	t.Helper()
	ctx := testContext(t)
	var left []string
	deadline := time.Now().Add(grace)
	for {
		left = append(nodeLockers(c), c.steps(ctx)...)
		for _, p := range lptest.Lockers(lockprobeBinary(t)) {
			left = append(left, fmt.Sprintf("locker process %d", p.PID))
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("left behind after the run:\n%s", strings.Join(left, "\n"))
	}
}

// watchCommandLines looks at every process's command line while the run goes and returns the
// function that lists those (other than the run's own, which was given the token, and a salloc
// around it) that held secret.
func watchCommandLines(r *lpRun, secret string) func() []string {
	var mu sync.Mutex
	found := map[string]bool{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				pid, err := strconv.Atoi(e.Name())
				if err != nil || pid == r.cmd.Process.Pid {
					continue
				}
				cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if err != nil || !bytes.Contains(cl, []byte(secret)) {
					continue
				}
				args := strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
				if filepath.Base(args[0]) == "salloc" || len(args) > 1 && args[1] == "run" {
					continue // the user's own command: they gave -token there
				}
				mu.Lock()
				found[strings.Join(args, " ")] = true
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() []string {
		close(done)
		<-stopped
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for k := range found {
			out = append(out, k)
		}
		return out
	}
}

// oneLine checks that a refused run said why in one line on stderr (what -v adds aside).
var logLine = regexp.MustCompile(`^time=\S+ level=`)

func oneLine(t *testing.T, r *lpRun, want string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr.String()), "\n") {
		if l != "" && !logLine.MatchString(l) && !strings.HasPrefix(l, "salloc: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("stderr %q: want one line saying %q", lines, want)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
