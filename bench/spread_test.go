package bench

import (
	"fmt"
	"strings"
	"testing"

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

// BenchmarkFireSpread measures, for every shared instant, max − min of the actual start of the
// lock.acquire spans scheduled for it (-on-hang wait: no hang detector may cut the run short) (lock.scheduled), and reports the median and p99 over the
// instants, and the median lateness of the first attempt after its instant.
func BenchmarkFireSpread(b *testing.B) {
	instants := short(50, 10)
	for _, procs := range []int{10, 100} {
		if procs > 10 && testing.Short() {
			continue
		}
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			var spreads, late []float64
			for i := 0; i < b.N; i++ {
				res := runLockprobe(b, spreadScenario(instants), "-procs", fmt.Sprint(procs), "-timeout", "60s", "-on-hang", "wait")
				first, last := map[int64]int64{}, map[int64]int64{}
				for _, s := range spansNamed(res.trace, semconv.SpanAcquire) {
					at, ok := s.Attrs.Int(semconv.LockScheduled)
					if !ok {
						continue
					}
					if v, seen := first[at]; !seen || s.Start < v {
						first[at] = s.Start
					}
					if v, seen := last[at]; !seen || s.Start > v {
						last[at] = s.Start
					}
				}
				if len(first) != instants {
					b.Fatalf("%d instants in the trace, want %d\nstdout: %s", len(first), instants, res.stdout)
				}
				for at, f := range first {
					spreads = append(spreads, float64(last[at]-f))
					late = append(late, float64(f-at))
				}
			}
			b.ReportMetric(us(median(spreads)), "spread-median-µs")
			b.ReportMetric(us(quantile(spreads, 0.99)), "spread-p99-µs")
			b.ReportMetric(us(median(late)), "late-median-µs")
		})
	}
}
