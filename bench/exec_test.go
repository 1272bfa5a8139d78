package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// lockLoop is the program of BenchmarkExecOverhead: 20000 F_SETLK write + unlock pairs on one
// byte, plus the interpreter's own start (thousands of calls the seccomp filter lets through).
const lockLoop = `import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
for i in range(20000):
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
`

// BenchmarkExecOverhead runs a lock loop bare and under `lockprobe exec` (ptrace + seccomp:
// two stops per lock call, none for the others) in the same run, and reports both walls and
// their ratio, exec/bare.
func BenchmarkExecOverhead(b *testing.B) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		b.Skip("no /usr/bin/python3")
	}
	dir := b.TempDir()
	script := filepath.Join(dir, "loop.py")
	if err := os.WriteFile(script, []byte(lockLoop), 0o644); err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(dir, "f")
	run := func(args ...string) time.Duration {
		t0 := time.Now()
		cmd := exec.Command(args[0], args[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", args, err, out)
		}
		return time.Since(t0)
	}
	var bare, traced time.Duration
	for i := 0; i < b.N; i++ {
		bare += run(py, script, file)
		traced += run(lockprobeBin, "exec", "-out", filepath.Join(dir, "out"), "--", py, script, file)
	}
	n := float64(b.N)
	b.ReportMetric(float64(bare.Nanoseconds())/n/1e6, "ms-bare")
	b.ReportMetric(float64(traced.Nanoseconds())/n/1e6, "ms-exec")
	b.ReportMetric(float64(traced)/float64(bare), "exec/bare")
	b.ReportMetric(float64(traced-bare)/n/40000, "ns/lock-call-added")
}
