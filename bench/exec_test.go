package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/ebpftracer"
	"github.com/lockprobe/lockprobe/internal/lptest"
)

// lockLoop is the program of BenchmarkExecOverhead: 20000 F_SETLK write + unlock pairs on one
// byte (40000 lock calls), timed by the program itself so that neither the interpreter's start
// nor lockprobe's analysis after the end is in the figure.
const lockLoop = `import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
t0 = time.perf_counter()
for i in range(20000):
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
print("loop_ns", int((time.perf_counter() - t0) * 1e9))
`

const loopCalls = 40000

// BenchmarkExecOverhead runs the lock loop bare, under each tracer with a handler that does
// nothing (bench/tracefloor: what tracing alone costs), and under `lockprobe exec` with each
// tracer (tracing + recording every attempt and hold as a span), interleaved, five rounds per
// iteration, and reports the medians of the loop's own time and their ratios to bare. ptrace
// stops the program twice per lock request and once per unlock; eBPF stops nothing. The eBPF
// variants need root and the kernel's BTF; without them they are left out.
func BenchmarkExecOverhead(b *testing.B) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		b.Skip("no /usr/bin/python3")
	}
	dir := b.TempDir()
	floorBin, err := lptest.Build(dir, "tracefloor", "./tracefloor")
	if err != nil {
		b.Fatal(err)
	}
	script := filepath.Join(dir, "loop.py")
	if err := os.WriteFile(script, []byte(lockLoop), 0o644); err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(dir, "f")
	out := filepath.Join(dir, "out")
	type variant struct {
		name string
		argv []string
	}
	vs := []variant{
		{"bare", []string{py, script, file}},
		{"ptrace-floor", []string{floorBin, "-tracer", "ptrace", "--", py, script, file}},
		{"exec-ptrace", []string{lockprobeBin, "exec", "-tracer", "ptrace", "-out", out, "--", py, script, file}},
	}
	if ebpftracer.Available() == nil {
		vs = append(vs,
			variant{"ebpf-floor", []string{floorBin, "-tracer", "ebpf", "--", py, script, file}},
			variant{"exec-ebpf", []string{lockprobeBin, "exec", "-tracer", "ebpf", "-out", out, "--", py, script, file}})
	} else {
		b.Logf("eBPF variants left out: %v", ebpftracer.Available())
	}
	run := func(argv []string) (loop, wall time.Duration) {
		t0 := time.Now()
		cmd := exec.Command(argv[0], argv[1:]...)
		o, err := cmd.Output()
		if err != nil {
			b.Fatalf("%v: %v\n%s", argv, err, o)
		}
		wall = time.Since(t0)
		for line := range strings.SplitSeq(string(o), "\n") {
			if v, ok := strings.CutPrefix(line, "loop_ns "); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					b.Fatalf("%v: %q", argv, line)
				}
				return time.Duration(n), wall
			}
		}
		b.Fatalf("%v printed no loop time:\n%s", argv, o)
		return 0, 0
	}
	loops := map[string][]float64{}
	walls := map[string][]float64{}
	const rounds = 5
	for i := 0; i < b.N*rounds; i++ {
		for _, v := range vs {
			l, w := run(v.argv)
			loops[v.name] = append(loops[v.name], float64(l))
			walls[v.name] = append(walls[v.name], float64(w))
		}
	}
	bare := median(loops["bare"])
	for _, v := range vs {
		m := median(loops[v.name])
		b.ReportMetric(m/1e6, "ms-"+v.name)
		if v.name == "bare" {
			continue
		}
		b.ReportMetric(m/bare, v.name+"/bare")
		b.ReportMetric(us((m-bare)/loopCalls), "µs/call-"+v.name)
	}
	for _, t := range []string{"ptrace", "ebpf"} {
		if e, f := loops["exec-"+t], loops[t+"-floor"]; len(e) > 0 && len(f) > 0 {
			b.ReportMetric(median(e)/median(f), "exec-"+t+"/floor")
			b.ReportMetric(median(walls["exec-"+t])/1e6, "ms-wall-exec-"+t)
		}
	}
}
