package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/ebpftracer"
	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// The tests of exec, watch and who run real casacore (Debian's python3-casacore) on a local
// disk: casacore's table locking is what the seed harness was written for.

const python = "/usr/bin/python3"

// casacoreScripts make a table, race to write it (lockoptions auto: the reader-upgrade race),
// hold it permanently while sleeping, read it, and lock one's own table then the next one's
// (lockoptions user: the ring).
var casacoreScripts = map[string]string{
	"mk.py": `import sys
from casacore.tables import table, maketabdesc, makescacoldesc
table(sys.argv[1], maketabdesc([makescacoldesc('x', 0)]), nrow=10, ack=False).close()
`,
	"race.py": `import sys, time
from casacore.tables import table
t = table(sys.argv[1], readonly=False, lockoptions='auto', ack=False)
time.sleep(float(sys.argv[2]))
try:
    t.putcell('x', 0, 1); t.flush(); t.unlock(); print('ok', flush=True)
except Exception as e:
    print('err', e, flush=True)
t.close()
`,
	"perm.py": `import sys, time
from casacore.tables import table
t = table(sys.argv[1], readonly=False, lockoptions='permanent', ack=False)
print('holding', flush=True)
time.sleep(float(sys.argv[2]))
`,
	"reader.py": `import sys
from casacore.tables import table
t = table(sys.argv[1], readonly=True, ack=False)
print(t.getcell('x', 0))
`,
	"ring.py": `import sys, time
from casacore.tables import table
a = table(sys.argv[1], readonly=False, lockoptions='user', ack=False)
a.lock(write=True)
time.sleep(float(sys.argv[3]))
b = table(sys.argv[2], readonly=False, lockoptions='user', ack=False)
b.lock(write=True)
`,
}

// needCasacore installs python3-casacore when it is missing (as root; CI starts clean) and
// writes the scripts into a new folder.
func needCasacore(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("real casacore: not in -short")
	}
	if exec.Command(python, "-c", "import casacore.tables").Run() != nil {
		if os.Getuid() != 0 {
			t.Skip("python3-casacore missing and not root to install it")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		unlock, err := lptest.LockFile(ctx, "/tmp/lockprobe-apt.lock")
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"update"}, {"install", "-y", "-o", "DPkg::Lock::Timeout=300", "python3-casacore"}} {
			cmd := exec.CommandContext(ctx, "apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				unlock()
				t.Fatalf("apt-get %v: %v\n%s", args, err, out)
			}
		}
		unlock()
	}
	dir := t.TempDir()
	for name, text := range casacoreScripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func makeTable(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if out, err := exec.Command(python, filepath.Join(dir, "mk.py"), p).CombinedOutput(); err != nil {
		t.Fatalf("make table: %v\n%s", err, out)
	}
	return p
}

// startPy starts a casacore script that the test kills at its end.
func startPy(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(python, append([]string{filepath.Join(dir, args[0])}, args[1:]...)...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// waitInSetlkw waits until process pid sits in fcntl(F_SETLKW): casacore polls first.
func waitInSetlkw(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if ps, err := host.ReadProcess(pid, 0); err == nil && ps.BlockedInLocks() && strings.HasPrefix(ps.Syscall, "72 ") && strings.Fields(ps.Syscall)[2] == "0x7" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("process %d not in F_SETLKW after %v", pid, within)
}

type verdictJSON struct {
	Verdict struct {
		Class   string `json:"class"`
		Exit    int    `json:"exit"`
		Summary string `json:"summary"`
	} `json:"verdict"`
	Findings []struct {
		Class    string `json:"class"`
		Summary  string `json:"summary"`
		Evidence []struct {
			Text string `json:"text"`
		} `json:"evidence"`
	} `json:"findings"`
	Lockers []struct {
		PID     int    `json:"pid"`
		Command string `json:"command"`
	} `json:"lockers"`
	Graph struct {
		Cycles [][]int64 `json:"cycles"`
		Edges  []struct {
			From, To int64
			Range    string `json:"range"`
			Mode     string `json:"mode"`
			File     string `json:"file"`
		} `json:"edges"`
	} `json:"graph"`
}

func readVerdictJSON(t *testing.T, dir string) verdictJSON {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "verdict.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v verdictJSON
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Case 1: four copies of a casacore writer hit the reader-upgrade race under exec. Each polls
// ~29 times a second apart, then waits; the kernel answers all but one with EDEADLK. Under
// each tracer the same trace and verdict: ptrace, and eBPF where root and BTF allow.
func TestExecCasacoreUpgradeRace(t *testing.T) {
	dir := needCasacore(t)
	for _, tracer := range []string{"ptrace", "ebpf"} {
		t.Run(tracer, func(t *testing.T) {
			if tracer == "ebpf" && ebpftracer.Available() != nil {
				t.Skip(ebpftracer.Available())
			}
			t.Parallel() // the two races lock tables of their own and mostly sleep
			tab := makeTable(t, dir, "T-"+tracer)
			execUpgradeRace(t, dir, tab, tracer)
		})
	}
}

func execUpgradeRace(t *testing.T, dir, tab, tracer string) {
	out := filepath.Join(t.TempDir(), "out")
	res, err := lptest.Run(binary, 3*time.Minute, "exec", "-tracer", tracer, "-n", "4", "-out", out, "-timeout", "90s", "--",
		python, filepath.Join(dir, "race.py"), tab, "3")
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 0 {
		t.Fatalf("exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	v := readVerdictJSON(t, out)
	if v.Verdict.Class != "fs-detected-deadlock" || !strings.Contains(v.Verdict.Summary, "tries over") || !strings.Contains(v.Verdict.Summary, "stall cost") {
		t.Errorf("verdict %s: %s", v.Verdict.Class, v.Verdict.Summary)
	}
	edeadlk := 0
	for _, f := range v.Findings {
		if f.Class == "fs-detected-deadlock" {
			edeadlk++
		}
	}
	if edeadlk != 3 {
		t.Errorf("%d EDEADLK findings, want 3 (all but one writer)", edeadlk)
	}
	if len(v.Lockers) != 4 || !strings.Contains(v.Lockers[0].Command, "race.py") {
		t.Errorf("processes %+v", v.Lockers)
	}
	// The trace: every process's write request on byte 0 of table.lock is one poll attempt of
	// ~29 tries, then one wait.
	tr, err := tracefile.Open(filepath.Join(out, tracefile.FileName))
	if err != nil {
		t.Fatal(err)
	}
	polls, waits := map[int64]int64{}, map[int64]string{}
	for _, s := range tr.Spans {
		if s.Name != semconv.SpanAcquire || s.Attrs.Str(semconv.LockMode) != "write" {
			continue
		}
		id := s.Attrs.IntOr(semconv.LockerID, -1)
		switch s.Attrs.Str(semconv.LockStyle) {
		case "poll":
			polls[id] = max(polls[id], s.Attrs.IntOr(semconv.LockTries, 0))
		case "wait":
			waits[id] = s.Attrs.Str(semconv.LockOutcome)
		}
	}
	if root := rootOf(tr); root == nil || root.Attrs.Str(semconv.RunTracer) != tracer {
		t.Errorf("the trace does not say the calls were seen by %s", tracer)
	}
	deadlocks := 0
	for id := range int64(4) {
		if polls[id] < 25 || polls[id] > 35 {
			t.Errorf("process %d: poll of %d tries, want ~29", id, polls[id])
		}
		if waits[id] == "deadlock" {
			deadlocks++
		}
	}
	if deadlocks != 3 {
		t.Errorf("wait outcomes %v: want 3 deadlock", waits)
	}
}

// Case 2: thirteen casacore processes, each holding its own table's write lock and opening the
// next one's, hang forever (the kernel follows at most 10 hops). watch sees the 13-cycle and
// each member's pending request from its own memory.
func TestWatchCasacoreRing(t *testing.T) {
	dir := needCasacore(t)
	const n = 13
	var tabs []string
	for i := range n {
		tabs = append(tabs, makeTable(t, dir, fmt.Sprintf("R%d", i)))
	}
	var cmds []*exec.Cmd
	for i := range n {
		cmds = append(cmds, startPy(t, dir, "ring.py", tabs[i], tabs[(i+1)%n], "3"))
	}
	for _, c := range cmds {
		waitInSetlkw(t, c.Process.Pid, 60*time.Second)
	}
	args := []string{"watch", "-for", "1s", "-out", filepath.Join(t.TempDir(), "out")}
	for _, tab := range tabs {
		args = append(args, "-file", filepath.Join(tab, "table.lock"))
	}
	res, err := lptest.Run(binary, time.Minute, args...)
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 3 {
		t.Fatalf("exit %d, want 3 (deadlock)\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	v := readVerdictJSON(t, args[4])
	if v.Verdict.Class != "deadlock" || !strings.Contains(v.Verdict.Summary, "processes ") {
		t.Errorf("verdict %s: %s", v.Verdict.Class, v.Verdict.Summary)
	}
	if len(v.Graph.Cycles) != 1 || len(v.Graph.Cycles[0]) != n {
		t.Fatalf("cycles %v, want one of %d", v.Graph.Cycles, n)
	}
	files := map[string]bool{}
	for _, e := range v.Graph.Edges {
		if e.Mode == "read" && e.Range == "[0, 1)" {
			files[e.File] = true
		}
	}
	if len(files) != n {
		t.Errorf("pending read requests on byte 0 of %d tables, want %d: %+v", len(files), n, v.Graph.Edges)
	}
}

// Cases 3 and 4: a casacore reader blocked by a holder of a permanent lock that sleeps. watch
// says stuck waiter and what the holder does; who lists both, and -json parses.
func TestWatchAndWhoCasacorePermanentHolder(t *testing.T) {
	dir := needCasacore(t)
	tab := makeTable(t, dir, "P")
	holder := startPy(t, dir, "perm.py", tab, "300")
	time.Sleep(2 * time.Second) // the holder opens the table first
	reader := startPy(t, dir, "reader.py", tab)
	waitInSetlkw(t, reader.Process.Pid, 60*time.Second) // after casacore's ~30 s of polls
	lockFile := filepath.Join(tab, "table.lock")
	out := filepath.Join(t.TempDir(), "out")
	res, err := lptest.Run(binary, time.Minute, "watch", "-file", lockFile, "-for", "0", "-out", out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 4 {
		t.Fatalf("exit %d, want 4 (stuck waiter)\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	v := readVerdictJSON(t, out)
	s := v.Verdict.Summary
	if v.Verdict.Class != "idle-holder" || !strings.Contains(s, fmt.Sprintf("pid %d", holder.Process.Pid)) ||
		!strings.Contains(s, "hrtimer_nanosleep") || !strings.Contains(s, "no lock call") {
		t.Errorf("verdict %s: %s", v.Verdict.Class, s)
	}
	named := false
	for _, l := range v.Lockers {
		named = named || l.PID == holder.Process.Pid && strings.Contains(l.Command, "perm.py")
	}
	if !named {
		t.Errorf("the holder is not named by pid and command line: %+v", v.Lockers)
	}

	res, err = lptest.Run(binary, time.Minute, "who", lockFile, "-json")
	if err != nil || res.Code != 0 {
		t.Fatalf("who: %v exit %d %s", err, res.Code, res.Stderr)
	}
	var views []struct {
		File string `json:"file"`
		Rows []struct {
			Role      string `json:"role"`
			PID       int    `json:"pid"`
			Mode      string `json:"mode"`
			Start     int64  `json:"start"`
			BlockedBy int    `json:"blocked_by"`
			Wchan     string `json:"wchan"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &views); err != nil {
		t.Fatalf("who -json: %v\n%s", err, res.Stdout)
	}
	var holds, waits bool
	for _, r := range views[0].Rows {
		if r.Role == "holder" && r.PID == holder.Process.Pid && r.Mode == "write" && r.Start == 0 && r.Wchan == "hrtimer_nanosleep" {
			holds = true
		}
		if r.Role == "waiter" && r.PID == reader.Process.Pid && r.BlockedBy == holder.Process.Pid && r.Mode == "read" {
			waits = true
		}
	}
	if !holds || !waits {
		t.Errorf("who rows: holder %v waiter %v\n%s", holds, waits, res.Stdout)
	}
	text, err := lptest.Run(binary, time.Minute, "who", lockFile)
	if err != nil || !strings.Contains(text.Stdout, "waiter") || !strings.Contains(text.Stdout, "reader.py") {
		t.Errorf("who text: %v\n%s", err, text.Stdout)
	}
}

// Case 6: bad input is one line and exit 2; a SIGKILLed lockprobe leaves no traced program
// behind, stopped or not.
func TestRealProgBadInput(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"exec missing program", []string{"exec", "--", "/nonexistent/prog"}, "program /nonexistent/prog"},
		{"exec no program", []string{"exec"}, "want a program"},
		{"watch gone pid", []string{"watch", "-file", f, "-pid", fmt.Sprint(gone.Process.Pid), "-for", "0"}, "no such process"},
		{"watch bad pid", []string{"watch", "-file", f, "-pid", "x"}, "not a process id"},
		{"watch missing file", []string{"watch", "-file", f + ".missing"}, "no such file"},
		{"who missing file", []string{"who", f + ".missing"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := lptest.Run(binary, 30*time.Second, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(res.Stderr), "\n")
			if res.Code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("exit %d stderr %q, want 2 and one line with %q", res.Code, res.Stderr, tc.want)
			}
		})
	}
	t.Run("watch pid not ours", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to run lockprobe as another user")
		}
		// lockprobe as nobody may not look at a root process's descriptors.
		open, err := os.MkdirTemp("", "lockprobe-nobody-") // t.TempDir's parents are root's alone
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(open)
		if err := os.Chmod(open, 0o755); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(open, "lockprobe")
		copyFile(t, binary, bin)
		f := filepath.Join(open, "f")
		copyFile(t, bin, f)
		_ = os.Chmod(f, 0o644)
		sleeper := exec.Command("sleep", "30")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
		cmd := exec.Command(bin, "watch", "-file", f, "-pid", fmt.Sprint(sleeper.Process.Pid), "-for", "0", "-out", filepath.Join(open, "out"))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err = cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "not yours") || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
			t.Errorf("err %v stderr %q, want exit 2 and one line saying not yours", err, stderr.String())
		}
	})
	t.Run("exec and watch as a user who may not load eBPF", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to run lockprobe as another user")
		}
		open, err := os.MkdirTemp("", "lockprobe-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(open)
		if err := os.Chmod(open, 0o777); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(open, "lockprobe")
		copyFile(t, binary, bin)
		asNobody := func(args ...string) (int, string, string) {
			cmd := exec.Command(bin, args...)
			cmd.Dir = open
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			return code, stdout.String(), stderr.String()
		}
		// -tracer ebpf refuses with one line; auto falls back to ptrace and records that.
		code, _, stderr := asNobody("exec", "-tracer", "ebpf", "-out", filepath.Join(open, "e"), "--", "/bin/true")
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "root") {
			t.Errorf("-tracer ebpf as nobody: exit %d stderr %q, want 2 and one line saying it needs root", code, stderr)
		}
		lf := filepath.Join(open, "w")
		if err := os.WriteFile(lf, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, stderr = asNobody("watch", "-tracer", "ebpf", "-file", lf, "-for", "0", "-out", filepath.Join(open, "wo"))
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "root") {
			t.Errorf("watch -tracer ebpf as nobody: exit %d stderr %q, want 2 and one line saying it needs root", code, stderr)
		}
		code, stdout, stderr := asNobody("exec", "-out", filepath.Join(open, "a"), "--", python, "-c",
			"import fcntl; f=open('l','w'); fcntl.lockf(f, fcntl.LOCK_EX)")
		if code != 0 {
			t.Fatalf("-tracer auto as nobody: exit %d\n%s\n%s", code, stdout, stderr)
		}
		tr, err := tracefile.Open(filepath.Join(open, "a"))
		if err != nil {
			t.Fatal(err)
		}
		if root := rootOf(tr); root == nil || root.Attrs.Str(semconv.RunTracer) != "ptrace" {
			t.Errorf("-tracer auto as nobody did not fall back to ptrace")
		}
	})
	for _, tracer := range []string{"ptrace", "ebpf"} {
		t.Run("SIGKILL of lockprobe exec -tracer "+tracer, func(t *testing.T) {
			if tracer == "ebpf" && ebpftracer.Available() != nil {
				t.Skip(ebpftracer.Available())
			}
			sigkillLeavesNothing(t, f, tracer)
		})
	}
}

// sigkillLeavesNothing kills lockprobe exec while its program sits in a lock call: under ptrace
// the tracee is stopped at each call and PTRACE_O_EXITKILL must take it along rather than leave
// it stopped; under eBPF nothing is stopped, and the copy's parent-death signal ends it.
func sigkillLeavesNothing(t *testing.T, f, tracer string) {
	lk, err := os.OpenFile(f, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	if err := syscall.FcntlFlock(lk.Fd(), syscall.F_SETLK, &syscall.Flock_t{Type: syscall.F_WRLCK}); err != nil {
		t.Fatal(err)
	}
	marker := fmt.Sprintf("lockprobe-exitkill-%d", time.Now().UnixNano())
	cmd := exec.Command(binary, "exec", "-tracer", tracer, "-out", filepath.Join(t.TempDir(), "out"), "--", python, "-c",
		"import fcntl,sys; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX)", f, marker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var traced int
	deadline := time.Now().Add(20 * time.Second)
	for traced == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		traced = findProc(marker)
	}
	if traced == 0 {
		_ = cmd.Process.Kill()
		t.Fatal("traced program never started")
	}
	waitInSetlkw(t, traced, 20*time.Second)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for host.ProcessExists(traced) && time.Now().Before(deadline) {
		if ps, err := host.ReadProcess(traced, 0); err == nil && ps.State == "Z" {
			break // dead, waiting for init to reap it
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ps, err := host.ReadProcess(traced, 0); err == nil && ps.State != "Z" {
		_ = syscall.Kill(traced, syscall.SIGKILL)
		t.Errorf("traced program %d still there (state %s) after lockprobe was killed", traced, ps.State)
	}
}

func rootOf(tr *tracefile.Trace) *tracefile.Span {
	for _, s := range tr.Spans {
		if s.Name == semconv.SpanRun {
			return s
		}
	}
	return nil
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// findProc returns a process whose command line holds marker and that is not lockprobe.
func findProc(marker string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		argv := host.Cmdline(pid)
		if len(argv) > 0 && argv[0] == python && strings.Contains(strings.Join(argv, " "), marker) {
			return pid
		}
	}
	return 0
}

// Under -timeout, two copies of a program: the one that gets the lock re-takes it 100 times
// (as casacore re-checks) and sleeps; the other waits for it. At the timeout lockprobe ends the
// wait `blocked` at the end instant, kills both and says so in the trace and the report; the
// holder's re-checks are counted and shown. Under each tracer.
func TestExecTimeoutKillsAndCountsRechecks(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes for seconds: not in -short")
	}
	for _, tracer := range []string{"ptrace", "ebpf"} {
		t.Run(tracer, func(t *testing.T) {
			if tracer == "ebpf" && ebpftracer.Available() != nil {
				t.Skip(ebpftracer.Available())
			}
			dir := t.TempDir()
			f := filepath.Join(dir, "f")
			out := filepath.Join(dir, "out")
			res, err := lptest.Run(binary, time.Minute, "exec", "-tracer", tracer, "-n", "2", "-timeout", "3s", "-out", out, "--",
				python, "-c", `import fcntl, sys, time
f = open(sys.argv[1], "a+")
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    fcntl.lockf(f, fcntl.LOCK_EX)
for i in range(100):
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
time.sleep(60)`, f)
			if err != nil {
				t.Fatal(err)
			}
			if res.Code == 1 || res.Code == 2 {
				t.Fatalf("exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
			}
			if !strings.Contains(res.Stdout, "re-checks") || !strings.Contains(res.Stdout, "killed: pid ") {
				t.Errorf("the summary shows no re-checks column or no killed line:\n%s", res.Stdout)
			}
			var v struct {
				Run struct {
					Killed []string `json:"killed"`
				} `json:"run"`
				Lockers []struct {
					PID      int   `json:"pid"`
					Rechecks int64 `json:"rechecks"`
				} `json:"lockers"`
			}
			b, err := os.ReadFile(filepath.Join(out, "verdict.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			var rechecks []int64
			for _, l := range v.Lockers {
				rechecks = append(rechecks, l.Rechecks)
			}
			if len(rechecks) != 2 || max(rechecks[0], rechecks[1]) != 100 || min(rechecks[0], rechecks[1]) != 0 {
				t.Errorf("re-checks per process %v, want 100 for the holder and 0 for the waiter", rechecks)
			}
			if len(v.Run.Killed) != 2 {
				t.Errorf("killed %v, want both processes", v.Run.Killed)
			}
			tr, err := tracefile.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			if root := rootOf(tr); root == nil || len(root.Attrs.Strings(semconv.RunKilled)) != 2 {
				t.Errorf("the trace does not name the killed processes")
			}
			blocked := 0
			for _, s := range tr.Spans {
				if s.Name == semconv.SpanAcquire && s.Attrs.Str(semconv.LockOutcome) == "blocked" {
					blocked++
					if end := rootOf(tr).End; s.End != end {
						t.Errorf("the blocked attempt ends at %d, not at the run's end %d", s.End, end)
					}
				}
			}
			if blocked != 1 {
				t.Errorf("%d blocked attempts, want the waiter's", blocked)
			}
			// The analysis of the saved trace names them too.
			again, err := lptest.Run(binary, time.Minute, "analyze", "-out", t.TempDir(), out)
			if err != nil || !strings.Contains(again.Stdout, "killed: pid ") {
				t.Errorf("analyze: %v\n%s", err, again.Stdout)
			}
		})
	}
}

// flock and OFD locks belong to the open file description: a child's flock on the descriptor
// it inherited finds the parent's lock its own and its unlock drops it; closing a dup of the
// descriptor drops nothing. Modelled per process and descriptor, the parent's hold would
// outlive the child's unlock and the exclusion checker would accuse the kernel. Under each tracer.
func TestExecLockSharedAcrossFork(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes: not in -short")
	}
	script := `import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
fcntl.fcntl(fd, 37, struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, 0, 0, 1, 0))  # F_OFD_SETLK write [0,1)
d = os.dup(fd); os.close(d)  # another descriptor of the description: its close drops nothing
pid = os.fork()
if pid == 0:
    fcntl.flock(fd, fcntl.LOCK_EX)  # the same description holds it already: granted at once, no change
    time.sleep(0.2)
    fcntl.flock(fd, fcntl.LOCK_UN)  # drops the parent's lock too
    fcntl.fcntl(fd, 37, struct.pack("hhxxxxqqixxxx", fcntl.F_UNLCK, 0, 0, 1, 0))
    os._exit(0)
os.waitpid(pid, 0)
fd2 = os.open(sys.argv[1], os.O_RDWR)  # another description takes both at once
fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
fcntl.fcntl(fd2, 37, struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, 0, 0, 1, 0))
time.sleep(0.2)
`
	for _, tracer := range []string{"ptrace", "ebpf"} {
		t.Run(tracer, func(t *testing.T) {
			if tracer == "ebpf" && ebpftracer.Available() != nil {
				t.Skip(ebpftracer.Available())
			}
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			res, err := lptest.Run(binary, time.Minute, "exec", "-tracer", tracer, "-out", out, "--", python, "-c", script, filepath.Join(dir, "f"))
			if err != nil {
				t.Fatal(err)
			}
			v := readVerdictJSON(t, out)
			if res.Code != 0 || v.Verdict.Class != "healthy" {
				t.Fatalf("exit %d verdict %s: %s\n%s", res.Code, v.Verdict.Class, v.Verdict.Summary, res.Stdout)
			}
			tr, err := tracefile.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			// The parent's flock and OFD holds end when the child unlocks them, not at the
			// dup's close nor at the parent's exit; the child's own flock re-took the lock.
			ends := map[string][]string{}
			for _, s := range tr.Spans {
				if s.Name == semconv.SpanHold {
					k := s.Attrs.Str(semconv.LockKind)
					ends[k] = append(ends[k], s.Attrs.Str(semconv.LockHoldEnd))
				}
			}
			want := map[string][]string{"flock": {"release", "exit"}, "ofd": {"release", "exit"}}
			for k, w := range want {
				if strings.Join(ends[k], ",") != strings.Join(w, ",") {
					t.Errorf("%s holds ended %v, want %v", k, ends[k], w)
				}
			}
		})
	}
}

// Case 3 during casacore's first ~30 s: the reader polls with F_SETLK a second apart and sits in
// no lock call between its tries, so looks alone miss it. who finds it in casacore's request
// list; with eBPF, watch sees each try: one poll attempt blocked by the sleeping permanent
// holder, and the verdict names the holder.
func TestWatchCasacorePollingWaiter(t *testing.T) {
	dir := needCasacore(t)
	tab := makeTable(t, dir, "Q")
	holder := startPy(t, dir, "perm.py", tab, "300")
	time.Sleep(2 * time.Second)
	reader := startPy(t, dir, "reader.py", tab)
	time.Sleep(2 * time.Second) // polling now: ~29 tries before its F_SETLKW
	res, err := lptest.Run(binary, time.Minute, "who", filepath.Join(tab, "table.lock"), "-json")
	if err != nil || res.Code != 0 {
		t.Fatalf("who: %v exit %d %s", err, res.Code, res.Stderr)
	}
	var views []struct {
		Rows []struct {
			Role string `json:"role"`
			PID  int    `json:"pid"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &views); err != nil || len(views) != 1 {
		t.Fatalf("who -json: %v\n%s", err, res.Stdout)
	}
	requester := false
	for _, r := range views[0].Rows {
		requester = requester || r.Role == "requester" && r.PID == reader.Process.Pid
	}
	if !requester {
		t.Errorf("who does not show the polling reader %d from casacore's request list:\n%s", reader.Process.Pid, res.Stdout)
	}
	if err := ebpftracer.Available(); err != nil {
		t.Skip(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	res, err = lptest.Run(binary, time.Minute, "watch", "-tracer", "ebpf", "-file", filepath.Join(tab, "table.lock"), "-for", "4s", "-out", out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 4 {
		t.Fatalf("exit %d, want 4 (stuck waiter)\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	v := readVerdictJSON(t, out)
	if v.Verdict.Class != "idle-holder" || !strings.Contains(v.Verdict.Summary, fmt.Sprintf("pid %d", holder.Process.Pid)) ||
		!strings.Contains(v.Verdict.Summary, fmt.Sprintf("pid %d", reader.Process.Pid)) {
		t.Errorf("verdict %s: %s", v.Verdict.Class, v.Verdict.Summary)
	}
	tr, err := tracefile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	var tries int64
	for _, s := range tr.Spans {
		if s.Name == semconv.SpanAcquire && s.Attrs.Str(semconv.LockStyle) == "poll" && s.Attrs.Str(semconv.LockMode) == "read" {
			tries = max(tries, s.Attrs.IntOr(semconv.LockTries, 0))
		}
	}
	if tries < 2 {
		t.Errorf("the reader's poll has %d tries, want one a second", tries)
	}
}
