// Package simfs runs lockprobe through simfs mounts (the real kernel FUSE path), one verdict of
// Lustre's lock semantics per test: each test starts `lockprobe simfs` with its mode and faults,
// then `lockprobe run` on the mounts, and checks the verdict, the evidence and that nothing is
// left behind (no mount, no locker process).
package simfs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/reports"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/simfs"
	"github.com/lockprobe/lockprobe/simfs/locktable"
	"github.com/lockprobe/lockprobe/tracefile"
)

// bin is the lockprobe binary, built once by TestMain.
var bin string

// skip is why the tests cannot run here ("" when they can).
var skip string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "lockprobe-simfs-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if !testing.Short() {
		skip = prepare(dir)
	}
	return m.Run()
}

// prepare builds the binary and makes sure FUSE can be mounted: root, /dev/fuse, and fuse3
// (fusermount3, go-fuse's fallback when the direct mount fails) installed from Debian.
func prepare(dir string) string {
	if os.Getuid() != 0 {
		return "mounting FUSE needs root"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := lptest.Install(ctx, "/tmp/lockprobe-apt.lock", []string{"fuse3"}, []string{"fusermount3"}); err != nil {
		return fmt.Sprintf("installing fuse3: %v", err)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		_ = exec.CommandContext(ctx, "modprobe", "fuse").Run()
		if _, err := os.Stat("/dev/fuse"); err != nil {
			return fmt.Sprintf("no /dev/fuse: %v", err)
		}
	}
	var err error
	if bin, err = lptest.BuildLockprobe(dir, lptest.Package); err != nil {
		return err.Error()
	}
	return ""
}

// server is one `lockprobe simfs` process.
type server struct {
	dir    string
	mounts []string
	cmd    *exec.Cmd
	out    bytes.Buffer
	done   chan error
}

// startSimfs starts `lockprobe simfs -mount DIR -nodes nodes args...` and waits until it serves.
// The test's cleanup stops it with SIGINT and fails when a mount is left.
func startSimfs(t *testing.T, nodes int, args ...string) *server {
	t.Helper()
	if testing.Short() {
		t.Skip("mounts simfs and runs lockprobe")
	}
	if skip != "" {
		t.Skip(skip)
	}
	return startSimfsIn(t, t.TempDir(), nodes, args...)
}

// startSimfsIn is startSimfs on a given folder.
func startSimfsIn(t *testing.T, dir string, nodes int, args ...string) *server {
	t.Helper()
	s := &server{dir: dir, done: make(chan error, 1)}
	all := append([]string{"simfs", "-mount", s.dir, "-nodes", strconv.Itoa(nodes), "-v"}, args...)
	s.cmd = exec.Command(bin, all...)
	s.cmd.Stderr = &s.out
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("lockprobe %s", strings.Join(all, " "))
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "serving") {
				ready <- sc.Text()
			}
		}
		s.done <- s.cmd.Wait()
	}()
	t.Cleanup(func() { s.stop(t) })
	select {
	case line := <-ready:
		t.Log(line)
	case err := <-s.done:
		s.done <- err
		t.Fatalf("lockprobe simfs ended before serving: %v\n%s", err, s.out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("lockprobe simfs not serving after 30s:\n%s", s.out.String())
	}
	for i := range nodes {
		s.mounts = append(s.mounts, filepath.Join(s.dir, "node"+strconv.Itoa(i)))
	}
	return s
}

// stop ends the server with SIGINT (SIGKILL and -cleanup if it does not go) and checks that no
// mount is left under its folder.
func (s *server) stop(t *testing.T) {
	t.Helper()
	killed := false
	select {
	case err := <-s.done: // the test killed it
		s.done <- err
		killed = true
	default:
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("lockprobe simfs after SIGINT: %v\n%s", err, s.out.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("lockprobe simfs still running 15s after SIGINT: killed\n%s", s.out.String())
			_ = s.cmd.Process.Kill()
			<-s.done
			_ = exec.Command(bin, "simfs", "-mount", s.dir, "-cleanup").Run()
		}
	}
	if killed {
		// A killed server's dead mounts are the test's to clean up.
		_ = exec.Command(bin, "simfs", "-mount", s.dir, "-cleanup").Run()
	}
	if left := simfsMounts(t, s.dir); len(left) > 0 {
		t.Errorf("simfs mounts left under %s: %v", s.dir, left)
		for _, m := range left {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
}

// simfsMounts returns the mount points of simfs mounts under dir.
func simfsMounts(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := simfs.MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.MountPoint)
	}
	return out
}

// files returns name through every mount, created through node 0.
func (s *server) files(t *testing.T, name string) []string {
	t.Helper()
	out, err := lptest.SameFile(s.mounts, name)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// run is one `lockprobe run`.
type run struct {
	out            string
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	code           int
	class, summary string
	trace          *tracefile.Trace
	res            *analysis.Result
	view           *reports.View // res in the reports' words
}

// stuckAfter is every run's -stuck-after: the runs wait a few seconds at most.
const stuckAfter = 2 * time.Second

// guard bounds one lockprobe run: far beyond the runs' own -timeout of a few seconds.
const guard = 60 * time.Second

// startRun starts `lockprobe run` with the scenario (a built-in name, or text written to a
// file), -file for each of files, and args.
func startRun(t *testing.T, files []string, scenario string, args ...string) *run {
	t.Helper()
	r := &run{out: filepath.Join(t.TempDir(), "out")}
	if strings.Contains(scenario, "\n") {
		p := filepath.Join(t.TempDir(), "scenario.lps")
		if err := os.WriteFile(p, []byte(scenario), 0o644); err != nil {
			t.Fatal(err)
		}
		scenario = p
	}
	all := []string{"run", "-scenario", scenario, "-out", r.out, "-stuck-after", stuckAfter.String()}
	for _, f := range files {
		all = append(all, "-file", f)
	}
	all = append(all, args...)
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	r.cmd = exec.CommandContext(ctx, bin, all...)
	r.cmd.Cancel = func() error { return r.cmd.Process.Signal(unix.SIGQUIT) }
	r.cmd.WaitDelay = 5 * time.Second
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = r.cmd.Wait() })
	t.Logf("lockprobe %s", strings.Join(all, " "))
	return r
}

var verdictLine = regexp.MustCompile(`^verdict: .+? \(exit (\d+)\)`)

// wait waits for the run, reads verdict.json and the trace, analyses the trace as `analyze`
// would, logs the findings and checks that no locker is left.
func (r *run) wait(t *testing.T) {
	t.Helper()
	err := r.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("lockprobe run: %v\nstderr: %s", err, r.stderr.String())
	}
	t.Logf("lockprobe run: status %d\n%s", r.code, r.stdout.String())
	first, _, _ := strings.Cut(r.stdout.String(), "\n")
	if m := verdictLine.FindStringSubmatch(first); m == nil || m[1] != strconv.Itoa(r.code) {
		t.Errorf("first line %q does not give the exit status %d", first, r.code)
	}
	var v struct {
		Verdict struct {
			Class   string `json:"class"`
			Summary string `json:"summary"`
		} `json:"verdict"`
	}
	b, err := os.ReadFile(filepath.Join(r.out, "verdict.json"))
	if err != nil {
		t.Fatalf("verdict.json: %v\nstderr: %s", err, tail(r.stderr.String()))
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("verdict.json: %v", err)
	}
	r.class, r.summary = v.Verdict.Class, v.Verdict.Summary
	if r.trace, err = tracefile.Open(r.out); err != nil {
		t.Fatal(err)
	}
	r.res = analysis.Analyze(r.trace, analysis.Options{StuckAfter: stuckAfter})
	r.view = reports.NewView(r.res, reports.Options{})
	for _, f := range r.view.Findings {
		t.Logf("finding %s (exit %d, lockers %v): %s", f.Class, f.Exit, f.Lockers, f.Summary)
		for _, e := range f.Evidence {
			t.Logf("  evidence [%s by %s @%d]: %s", e.Source, e.By, e.AtNS, e.Text)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(lptest.Lockers(bin)) > 0 {
		if time.Now().After(deadline) {
			t.Errorf("locker processes left: %v", lptest.PIDs(lptest.Lockers(bin)))
			for _, pid := range lptest.PIDs(lptest.Lockers(bin)) {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expect checks the verdict's class and exit status.
func (r *run) expect(t *testing.T, class string, code int) {
	t.Helper()
	if r.class != class || r.code != code {
		t.Errorf("verdict %s, status %d; want %s, exit %d\nstdout: %s\nstderr: %s", r.class, r.code, class, code, r.stdout.String(), tail(r.stderr.String()))
	}
}

// finding returns the first finding of class, or nil.
func (r *run) finding(class string) *reports.FindingView {
	for i := range r.view.Findings {
		if r.view.Findings[i].Class == class {
			return &r.view.Findings[i]
		}
	}
	return nil
}

// table reads the lock table dump lockprobe attached to the run.
func (r *run) table(t *testing.T) *locktable.Table {
	t.Helper()
	f, err := os.Open(filepath.Join(r.out, "simfs-locks.txt"))
	if err != nil {
		t.Fatalf("the run has no simfs lock table: %v", err)
	}
	defer f.Close()
	tb, err := locktable.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range tb.Locks {
		t.Logf("simfs lock %+v", l)
	}
	for _, e := range tb.Events {
		t.Logf("simfs event %s node %d lock %d: %s", e.At.Format("15:04:05.000"), e.Node, e.Lock, e.What)
	}
	return tb
}

// report returns report.html's text.
func (r *run) report(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// spans returns the spans of one name by locker id, then start.
func spans(tr *tracefile.Trace, name string) []*tracefile.Span {
	var out []*tracefile.Span
	for _, s := range tr.Spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if a, b := lockerOf(out[i]), lockerOf(out[j]); a != b {
			return a < b
		}
		return out[i].Start < out[j].Start
	})
	return out
}

func lockerOf(s *tracefile.Span) int64 {
	if v, ok := s.Attrs.Int(semconv.LockerID); ok {
		return v
	}
	return s.Resource.IntOr(semconv.LockerID, -100)
}

func pidOf(t *testing.T, tr *tracefile.Trace, id int64) int64 {
	t.Helper()
	for _, s := range spans(tr, semconv.SpanLocker) {
		if lockerOf(s) == id {
			return s.Resource.IntOr(semconv.ProcessPID, s.Attrs.IntOr(semconv.ProcessPID, -1))
		}
	}
	t.Fatalf("no locker span of locker %d", id)
	return 0
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}
