package gluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
	"golang.org/x/sys/unix"
)

// keepEnv names a folder where the lockprobe tests keep each run's output
// (trace, verdict, report, statedump) instead of a temp dir: the evidence
// FINDINGS.md quotes.
const keepEnv = "LOCKPROBE_GLUSTER_KEEP"

// runGuard is how long a test lets one lockprobe run take before it calls
// it hung: far beyond the runs' own -timeout of a few seconds.
const runGuard = 45 * time.Second

// The lockprobe binary is built once per test binary, into the shared
// daemon's directory, which the daemon's Close removes: lockers must be real
// processes started the way users start them. (The package's TestMain is the
// harness's own, so the binary cannot be built there.)
var (
	lpOnce sync.Once
	lpPath string
	lpErr  error
)

func lockprobeBinary(t *testing.T, d *Daemon) string {
	t.Helper()
	lpOnce.Do(func() {
		dir := filepath.Join(d.Dir, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			lpErr = err
			return
		}
		lpPath, lpErr = lptest.BuildLockprobe(dir, lptest.Package)
	})
	if lpErr != nil {
		t.Fatal(lpErr)
	}
	return lpPath
}

// lpCluster is a fresh two-mount cluster on the shared daemon with the
// lockprobe binary, checked after its Close for leftovers (mounts,
// processes, files) and, after every run, for locker processes.
type lpCluster struct {
	*Cluster
	bin string
}

func newLPCluster(ctx context.Context, t *testing.T) *lpCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts GlusterFS and lockprobe runs")
	}
	d := Use(t, shared, sharedErr)
	bin := lockprobeBinary(t, d)
	var c *Cluster
	var pids []int
	// Cleanups run last-registered first: the pids are taken, then the
	// cluster closed (NewCluster's cleanup), then this check runs.
	t.Cleanup(func() {
		if c == nil {
			return
		}
		if left := leftovers(c.dir, pids...); len(left) > 0 {
			t.Errorf("cluster Close left behind:\n%s", strings.Join(left, "\n"))
		}
	})
	c, err := d.NewCluster(ctx, t, Options{Mounts: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pids = []int{c.ClientPID(0), c.ClientPID(1)} })
	return &lpCluster{Cluster: c, bin: bin}
}

// files returns the same file through each mount, created through mount 0.
func (c *lpCluster) files(t *testing.T, name string) []string {
	t.Helper()
	out, err := lptest.SameFile(c.Mounts, name)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lpRun is one `lockprobe run` against the cluster.
type lpRun struct {
	out            string
	cmd            *exec.Cmd
	cancel         context.CancelFunc
	stdout, stderr bytes.Buffer
	started        time.Time
	wall           time.Duration
	code           int
	class          string // from the first line of stdout
	lineExit       int
	summary        string
	verdict        *lptest.Verdict // nil when the run wrote no verdict.json
	trace          *tracefile.Trace
}

// outDir is where a run writes: under keepEnv when set, else a temp dir.
func outDir(t *testing.T, label string) string {
	if keep := os.Getenv(keepEnv); keep != "" {
		name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name() + "_" + label)
		dir := filepath.Join(keep, name)
		_ = os.RemoveAll(dir)
		return dir
	}
	return filepath.Join(t.TempDir(), "out")
}

// start starts `lockprobe run` on the file through both mounts with the
// scenario (a built-in name, or a text written to a file) and args.
func (c *lpCluster) start(t *testing.T, label, file, scenario string, args ...string) *lpRun {
	t.Helper()
	r := &lpRun{out: outDir(t, label)}
	if strings.Contains(scenario, "\n") {
		p := filepath.Join(t.TempDir(), "scenario.lps")
		if err := os.WriteFile(p, []byte(scenario), 0o644); err != nil {
			t.Fatal(err)
		}
		scenario = p
	}
	all := []string{"run", "-scenario", scenario, "-out", r.out, "-gluster-sock", c.d.Socket(), "-v"}
	for _, f := range c.files(t, file) {
		all = append(all, "-file", f)
	}
	all = append(all, args...)
	// The deadline only guards the test against a run that never ends: a
	// run that hangs gets SIGQUIT first, so that its stderr shows where
	// every goroutine of the controller waits, then SIGKILL.
	ctx, cancel := context.WithTimeout(context.Background(), runGuard)
	r.cancel = cancel
	r.cmd = exec.CommandContext(ctx, c.bin, all...)
	r.cmd.Cancel = func() error { return r.cmd.Process.Signal(unix.SIGQUIT) }
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	r.cmd.WaitDelay = 5 * time.Second
	r.started = time.Now()
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = r.cmd.Wait() })
	t.Logf("lockprobe %s", strings.Join(all, " "))
	return r
}

// verdictLine is the first line of run's stdout: "verdict: TITLE (exit N)",
// followed by ": SUMMARY" in the CLI's first form.
var verdictLine = regexp.MustCompile(`^verdict: (.+?) \(exit (\d+)\)(?:: (.*))?$`)

// wait waits for the run to end, parses the verdict line and reads the
// trace; then, unless c is nil, it checks that no locker or observer process
// is left. A test whose members may sit in an uninterruptible FUSE wait on a
// stopped client passes nil and checks after it resumes the client: no
// signal ends such a wait, so lockprobe can only name those members.
func (r *lpRun) wait(t *testing.T, c *lpCluster) {
	t.Helper()
	err := r.cmd.Wait()
	r.cancel()
	r.wall = time.Since(r.started)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("lockprobe: %v\nstderr: %s", err, r.stderr.String())
	}
	if r.wall >= runGuard {
		t.Errorf("lockprobe did not end within %s: killed (SIGQUIT); its goroutines:\n%s", runGuard, tail(r.stderr.String(), 20000))
	}
	t.Logf("lockprobe ended after %s with status %d; stdout:\n%s", r.wall.Round(time.Millisecond), r.code, r.stdout.String())
	first, _, _ := strings.Cut(r.stdout.String(), "\n")
	if m := verdictLine.FindStringSubmatch(first); m != nil {
		r.class, r.summary = m[1], m[3]
		r.lineExit, _ = strconv.Atoi(m[2])
	} else {
		t.Errorf("first line of stdout is not a verdict: %q\nstderr: %s", first, r.stderr.String())
	}
	// verdict.json, once the CLI writes it, is the authority on the class.
	if v, err := lptest.ReadVerdict(r.out); err == nil {
		r.verdict = v
		r.class, r.summary = v.Verdict.Class, v.Verdict.Summary
		if v.Verdict.Exit != r.lineExit {
			t.Errorf("verdict.json says exit %d, the summary's first line %d", v.Verdict.Exit, r.lineExit)
		}
	}
	tr, err := tracefile.Open(r.out)
	if err != nil {
		t.Fatalf("reading the trace: %v\nstderr: %s", err, r.stderr.String())
	}
	r.trace = tr
	if c != nil {
		c.assertNoLockers(t)
	}
}

// expect checks the verdict class and the exit status.
func (r *lpRun) expect(t *testing.T, class string, code int) {
	t.Helper()
	if r.class != class || r.code != code || r.lineExit != code {
		t.Errorf("verdict %s (line says exit %d), status %d; want %s exit %d\nstdout: %s\nstderr tail: %s",
			r.class, r.lineExit, r.code, class, code, r.stdout.String(), tail(r.stderr.String(), 3000))
	}
}

// lockerProcesses returns the pids of the binary's locker and observer
// processes (both run as `lockprobe locker ...`), zombies excepted.
func (c *lpCluster) lockerProcesses() []int { return lptest.PIDs(lptest.Lockers(c.bin)) }

// assertNoLockers fails the test when a locker process outlives its run
// (after a short grace for processes being reaped), and kills it.
func (c *lpCluster) assertNoLockers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := c.lockerProcesses()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, pid := range left {
				st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
				desc = append(desc, fmt.Sprintf("%d (%s) wchan %s", pid, strings.TrimSpace(string(st)), wchan))
				_ = unix.Kill(pid, unix.SIGKILL)
			}
			t.Errorf("locker processes left behind by lockprobe:\n%s", strings.Join(desc, "\n"))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The trace helpers shared with the other end-to-end packages.
var (
	lockerID = lptest.LockerID
	node     = lptest.Node
	watch    = lptest.Watch
)

// spans returns the spans of one name, by locker id then start.
func spans(tr *tracefile.Trace, name string) []*tracefile.Span {
	var out []*tracefile.Span
	for _, s := range tr.Spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		li, lj := lockerID(out[i]), lockerID(out[j])
		if li != lj {
			return li < lj
		}
		return out[i].Start < out[j].Start
	})
	return out
}

func pidOf(s *tracefile.Span) int64 {
	if v, ok := s.Attrs.Int(semconv.ProcessPID); ok {
		return v
	}
	return s.Resource.IntOr(semconv.ProcessPID, -1)
}

// attempt returns locker id's first lock.acquire span, or nil.
func attempt(tr *tracefile.Trace, id int64) *tracefile.Span {
	for _, s := range spans(tr, semconv.SpanAcquire) {
		if lockerID(s) == id {
			return s
		}
	}
	return nil
}

// events returns the events of one name on the spans of another.
func events(tr *tracefile.Trace, span, event string) []tracefile.Event {
	var out []tracefile.Event
	for _, s := range spans(tr, span) {
		for _, e := range s.Events {
			if e.Name == event {
				out = append(out, e)
			}
		}
	}
	return out
}

// describe renders a span briefly for failure messages and logs.
func describe(s *tracefile.Span) string {
	attrs := slices.SortedFunc(slices.Values(s.Attrs), func(x, y tracefile.Attr) int { return strings.Compare(x.Key, y.Key) })
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%d..%d] node=%s pid=%d", s.Name, s.Start, s.End, node(s), pidOf(s))
	for _, kv := range attrs {
		fmt.Fprintf(&b, " %s=%v", kv.Key, kv.Value)
	}
	return b.String()
}

func describeEvent(e tracefile.Event) string {
	attrs := slices.SortedFunc(slices.Values(e.Attrs), func(x, y tracefile.Attr) int { return strings.Compare(x.Key, y.Key) })
	var b strings.Builder
	fmt.Fprintf(&b, "%s @%d", e.Name, e.Time)
	for _, kv := range attrs {
		fmt.Fprintf(&b, " %s=%v", kv.Key, kv.Value)
	}
	return b.String()
}
