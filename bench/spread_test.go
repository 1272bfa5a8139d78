package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
)

// spreadScenario has n shared instants, 100 ms apart, each a try-lock by every locker and a
// release by the one that got it: the contend experiment repeated, with nothing waiting in
// between so that every instant starts from idle lockers.
func spreadScenario(n int) string {
	var sb strings.Builder
	sb.WriteString("# description: fire spread: n shared instants, every locker tries a write lock at each\nall: file@{file}\n")
	for k := 0; k < n; k++ {
		fmt.Fprintf(&sb, "all: write@+%dms style=try\nall: releaseif\n", 1000+100*k)
	}
	sb.WriteString("all: stop\n")
	return sb.String()
}

// firing collects, per shared instant, the earliest and latest stamp of the processes that
// fired at it.
type firing struct{ first, last map[int64]int64 }

func newFiring() firing { return firing{first: map[int64]int64{}, last: map[int64]int64{}} }

func (f firing) add(at, stamp int64) {
	if v, seen := f.first[at]; !seen || stamp < v {
		f.first[at] = stamp
	}
	if v, seen := f.last[at]; !seen || stamp > v {
		f.last[at] = stamp
	}
}

// spreads returns max − min per instant and the lateness of the first process, in ns.
func (f firing) spreads() (spread, late []float64) {
	for at, first := range f.first {
		spread = append(spread, float64(f.last[at]-first))
		late = append(late, float64(first-at))
	}
	return spread, late
}

// runSpreadFloor runs the floor program (bench/baseline -spread) and returns its firings.
func runSpreadFloor(b *testing.B, procs, instants int) firing {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, baselineBin, "-spread", "-file", filepath.Join(b.TempDir(), "lock-file"),
		"-procs", fmt.Sprint(procs), "-instants", fmt.Sprint(instants), "-every", "100ms")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("baseline -spread: %v\n%s", err, stderr.String())
	}
	f := newFiring()
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var k, at, stamp int64
		if _, err := fmt.Sscan(sc.Text(), &k, &at, &stamp); err != nil {
			b.Fatalf("baseline line %q: %v", sc.Text(), err)
		}
		f.add(at, stamp)
	}
	if len(f.first) != instants {
		b.Fatalf("floor: %d instants, want %d", len(f.first), instants)
	}
	return f
}

// BenchmarkFireSpread measures, for every shared instant, max − min of the actual start of the
// lock.acquire spans scheduled for it (lock.scheduled; -on-hang wait, so that no hang detector
// cuts the run short), and reports the median and p99 over the instants and the median lateness
// of the first attempt. Beside each lockprobe figure, in the same run, the floor: the same
// number of plain processes that wake at the same kind of instants and do nothing but stamp and
// lock (bench/baseline -spread); lockprobe's median over the floor's is the ratio.
func BenchmarkFireSpread(b *testing.B) {
	instants := short(50, 10)
	for _, procs := range []int{10, 100} {
		if procs > 10 && testing.Short() {
			continue
		}
		var floor float64
		b.Run(fmt.Sprintf("floor/procs=%d", procs), func(b *testing.B) {
			var spreads, late []float64
			for i := 0; i < b.N; i++ {
				s, l := runSpreadFloor(b, procs, instants).spreads()
				spreads, late = append(spreads, s...), append(late, l...)
			}
			floor = median(spreads)
			b.ReportMetric(us(floor), "spread-median-µs")
			b.ReportMetric(us(quantile(spreads, 0.99)), "spread-p99-µs")
			b.ReportMetric(us(median(late)), "late-median-µs")
		})
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			var spreads, late []float64
			for i := 0; i < b.N; i++ {
				res := runLockprobe(b, spreadScenario(instants), "-procs", fmt.Sprint(procs), "-timeout", "60s", "-on-hang", "wait")
				f := newFiring()
				for _, s := range spansNamed(res.trace, semconv.SpanAcquire) {
					if at, ok := s.Attrs.Int(semconv.LockScheduled); ok {
						f.add(at, s.Start)
					}
				}
				if len(f.first) != instants {
					b.Fatalf("%d instants in the trace, want %d\nstdout: %s", len(f.first), instants, res.stdout)
				}
				s, l := f.spreads()
				spreads, late = append(spreads, s...), append(late, l...)
			}
			m := median(spreads)
			b.ReportMetric(us(m), "spread-median-µs")
			b.ReportMetric(us(quantile(spreads, 0.99)), "spread-p99-µs")
			b.ReportMetric(us(median(late)), "late-median-µs")
			if floor > 0 {
				b.ReportMetric(m/floor, "ratio-to-floor")
			}
		})
	}
}
