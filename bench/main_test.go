package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/internal/lptest"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// lockprobeBin (with the locker build beside it), baselineBin and noopBin are built once for the
// whole run: lockers must be real processes, started the way users start them.
var lockprobeBin, baselineBin, noopBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lockprobe-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if lockprobeBin, err = lptest.BuildLockprobe(dir, lptest.Package); err == nil {
		if baselineBin, err = lptest.Build(dir, "baseline", "./baseline"); err == nil {
			noopBin, err = lptest.Build(dir, "noop", "./noop")
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The figures depend on what else the machine runs: say so in the output.
	fmt.Println("# load-before:", loadAvg())
	code := m.Run()
	fmt.Println("# load-after:", loadAvg())
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one finished lockprobe run.
type result struct {
	code   int
	stdout string
	stderr string
	out    string // output folder
	wall   time.Duration
	trace  *tracefile.Trace
}

// runLockprobe runs `lockprobe run` with scenario (a built-in name or a scenario text holding a
// newline) on a fresh file, and reads its trace.
func runLockprobe(b *testing.B, scenario string, args ...string) result {
	b.Helper()
	dir := b.TempDir()
	if strings.Contains(scenario, "\n") {
		path := filepath.Join(dir, "scenario.lps")
		if err := os.WriteFile(path, []byte(scenario), 0o644); err != nil {
			b.Fatal(err)
		}
		scenario = path
	}
	out := filepath.Join(dir, "out")
	all := append([]string{"run", "-file", filepath.Join(dir, "lock-file"), "-scenario", scenario, "-out", out}, args...)
	res := execLockprobe(b, 5*time.Minute, all...)
	res.out = out
	if res.code == 1 || res.code == 2 {
		b.Fatalf("lockprobe %v: exit %d\nstdout: %s\nstderr: %s", all, res.code, res.stdout, tail(res.stderr))
	}
	tr, err := tracefile.Open(out)
	if err != nil {
		b.Fatalf("read trace: %v\nstdout: %s\nstderr: %s", err, res.stdout, res.stderr)
	}
	res.trace = tr
	return res
}

// tail keeps the end of a long stderr: a thousand lockers' warnings would drown the figures.
func tail(s string) string {
	const keep = 2000
	if len(s) <= keep {
		return s
	}
	return "..." + s[len(s)-keep:]
}

// execLockprobe runs the binary with args under a deadline; exit statuses are the caller's.
func execLockprobe(b *testing.B, timeout time.Duration, args ...string) result {
	b.Helper()
	r, err := lptest.Run(lockprobeBin, timeout, args...)
	if err != nil {
		b.Fatalf("%v\nstderr: %s", err, tail(r.Stderr))
	}
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr, wall: r.Wall}
}

// spansNamed returns the spans of one name in start order.
func spansNamed(tr *tracefile.Trace, name string) []*tracefile.Span {
	var out []*tracefile.Span
	for _, s := range tr.Spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// rootSpan returns the run's root span, or nil.
func rootSpan(tr *tracefile.Trace) *tracefile.Span {
	if s := spansNamed(tr, semconv.SpanRun); len(s) > 0 {
		return s[0]
	}
	return nil
}

// quantile returns the q-quantile (0..1) of xs by the nearest-rank method; xs is sorted in place.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	i := int(q*float64(len(xs))+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// us converts nanoseconds to microseconds, the unit of the latency figures.
func us(ns float64) float64 { return ns / 1e3 }

func short(full, quick int) int {
	if testing.Short() {
		return quick
	}
	return full
}

// loadAvg is the 1-, 5- and 15-minute load average.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
