package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// verdictOf reads the class from the run's verdict.json, or from the summary line.
func verdictOf(t *testing.T, res runResult) string {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(res.out, "verdict.json")); err == nil {
		var v struct {
			Verdict struct {
				Class string `json:"class"`
			} `json:"verdict"`
			Class string `json:"class"`
		}
		if json.Unmarshal(b, &v) == nil {
			if v.Verdict.Class != "" {
				return v.Verdict.Class
			}
			if v.Class != "" {
				return v.Class
			}
		}
	}
	for _, line := range strings.Split(res.stdout, "\n") {
		if rest, ok := strings.CutPrefix(line, "verdict: "); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("no verdict in the output:\n%s", res.stdout)
	return ""
}

// runBuiltin runs a built-in scenario on a fresh temp file.
func runBuiltin(t *testing.T, args ...string) runResult {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	all := append([]string{"run", "-file", filepath.Join(dir, "lock-file"), "-out", out}, args...)
	res := lockprobe(t, 90*time.Second, all...)
	res.out = out
	assertNoLockers(t)
	return res
}

// TestHangsOnLocalDisk runs the built-in hangs against the kernel's own lock manager: the
// verdicts and exit statuses users rely on.
func TestHangsOnLocalDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("runs many lockers for several seconds")
	}
	cases := []struct {
		name  string
		args  []string
		class string
		exit  int
	}{
		{"upgrade ofd", []string{"-scenario", "upgrade", "-lock", "ofd", "-procs", "3"}, "deadlock", 3},
		// flock converts by unlocking first (flock(2)): upgrades never deadlock, they serialise.
		{"upgrade flock", []string{"-scenario", "upgrade", "-lock", "flock", "-procs", "2"}, "healthy", 0},
		// Linux follows POSIX cycles of at most 10 hops: a ring of 13 hangs silently.
		{"ring 13 posix", []string{"-scenario", "ring", "-lock", "posix", "-procs", "13"}, "deadlock", 3},
		{"ring 4 posix", []string{"-scenario", "ring", "-lock", "posix", "-procs", "4"}, "fs-detected-deadlock", 0},
		{"ring 3 ofd", []string{"-scenario", "ring", "-lock", "ofd", "-procs", "3"}, "deadlock", 3},
		{"abba flock two files", []string{"-scenario", "abba2", "-lock", "flock"}, "deadlock", 3},
		{"hold", []string{"-scenario", "hold", "-procs", "3", "-timeout", "4s"}, "long-hold", 0},
		// casacore's upgrade: three readers of byte 0 poll, then wait, for write. While they poll
		// the cycle is no deadlock yet; once they wait, the kernel breaks it with EDEADLK for
		// POSIX locks and lets it hang for OFD locks.
		{"casacore 3 posix", []string{"-scenario", "casacore", "-lock", "posix", "-procs", "3"}, "fs-detected-deadlock", 0},
		{"casacore 3 ofd", []string{"-scenario", "casacore", "-lock", "ofd", "-procs", "3"}, "deadlock", 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := runBuiltin(t, c.args...)
			if got := verdictOf(t, res); got != c.class || res.code != c.exit {
				t.Errorf("verdict %s exit %d, want %s exit %d\nstdout: %s\nstderr: %s", got, res.code, c.class, c.exit, res.stdout, res.stderr)
			}
			if c.class == "deadlock" && !strings.Contains(res.stdout, "detected") {
				t.Errorf("summary does not say how long after the cycle formed it was detected:\n%s", res.stdout)
			}
			sameAsAnalyze(t, res)
		})
	}
}

// sameAsAnalyze reads the run's trace again with `lockprobe analyze`: the run reports from its
// live analysis without reading the trace back, and must conclude what the offline analysis of
// its trace concludes — the same findings, graph and statistics.
func sameAsAnalyze(t *testing.T, res runResult) {
	t.Helper()
	sameStreamed(t, res.out)
	again := filepath.Join(t.TempDir(), "again")
	a := lockprobe(t, 60*time.Second, "analyze", "-out", again, res.out)
	if a.code != res.code {
		t.Errorf("analyze exits %d, run exited %d\n%s", a.code, res.code, a.stdout)
	}
	load := func(dir string) map[string]any {
		v := readVerdictMap(t, dir)
		delete(v["verdict"].(map[string]any), "detection_latency_ns") // only the live run measures it
		return v
	}
	live, offline := load(res.out), load(again)
	for _, k := range []string{"verdict", "findings", "graph", "statistics", "proc_locks"} {
		if !reflect.DeepEqual(live[k], offline[k]) {
			l, _ := json.MarshalIndent(live[k], "", " ")
			o, _ := json.MarshalIndent(offline[k], "", " ")
			t.Errorf("verdict.json %q of the run differs from analyze's:\nrun:\n%s\nanalyze:\n%s", k, l, o)
		}
	}
}

// TestForeignHolder: a process outside the run holds the lock; the lockers wait for it.
func TestForeignHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("waits past -stuck-after")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "lock-file")
	foreign := holdLockInChild(t, file)
	out := filepath.Join(dir, "out")
	res := lockprobe(t, 60*time.Second, "run", "-file", file, "-procs", "2", "-timeout", "4s", "-stuck-after", "2s", "-out", out)
	res.out = out
	assertNoLockers(t)
	if got := verdictOf(t, res); got != "foreign-holder" || res.code != 4 {
		t.Fatalf("verdict %s exit %d, want foreign-holder exit 4\n%s", got, res.code, res.stdout)
	}
	if !strings.Contains(res.stdout, strconv.Itoa(foreign)) {
		t.Errorf("the summary does not name the foreign pid %d:\n%s", foreign, res.stdout)
	}

	// The same trace read again offline gives the same verdict.
	again := lockprobe(t, 30*time.Second, "analyze", "-stuck-after", "2s", "-out", filepath.Join(dir, "again"), out)
	again.out = filepath.Join(dir, "again")
	if got := verdictOf(t, again); got != "foreign-holder" || again.code != 4 {
		t.Errorf("analyze: verdict %s exit %d, want foreign-holder exit 4", got, again.code)
	}
}

// holdLockInChild starts a process outside the run that write-locks file and sleeps; it is
// killed when the test ends. It returns its pid once the lock is held.
func holdLockInChild(t *testing.T, file string) int {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// A shell's exec of a tiny program would need a lock tool; the test binary itself serves.
	child := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	child.Env = append(os.Environ(), "LOCKPROBE_HOLD_FILE="+file)
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	buf := make([]byte, 6)
	if _, err := stdout.Read(buf); err != nil || string(buf[:4]) != "held" {
		t.Fatalf("helper did not take the lock: %q %v", buf, err)
	}
	return child.Process.Pid
}

// TestHelperHoldLock is not a test: it is the foreign process of TestForeignHolder.
func TestHelperHoldLock(t *testing.T) {
	file := os.Getenv("LOCKPROBE_HOLD_FILE")
	if file == "" {
		t.Skip("helper process only")
	}
	fd, err := unix.Open(file, unix.O_RDWR, 0)
	if err != nil {
		os.Exit(1)
	}
	fl := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &fl); err != nil {
		os.Exit(1)
	}
	os.Stdout.WriteString("held\n")
	time.Sleep(time.Minute)
	os.Exit(0)
}
