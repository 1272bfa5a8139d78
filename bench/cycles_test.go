package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// cycle is one grant of a write lock: when it was asked for, granted and released.
type cycle struct {
	locker                  int64
	attempt, grant, release int64 // unix ns
}

// cyclesOfTrace pairs every ended lock.hold with the lock.acquire that granted it.
func cyclesOfTrace(tr *tracefile.Trace) []cycle {
	attempts := map[string]int64{}
	for _, s := range spansNamed(tr, semconv.SpanAcquire) {
		attempts[s.SpanID] = s.Start
	}
	var out []cycle
	for _, h := range spansNamed(tr, semconv.SpanHold) {
		at, ok := attempts[h.Attrs.Str(semconv.LockAcquireID)]
		if !ok || h.Open() || h.Attrs.Str(semconv.LockHoldEnd) != semconv.HoldRelease.String() {
			continue
		}
		out = append(out, cycle{locker: h.Attrs.IntOr(semconv.LockerID, -1), attempt: at, grant: h.Start, release: h.End})
	}
	return out
}

// runBaseline runs the bare fcntl program (with extra flags, if any) and parses its lines.
func runBaseline(b *testing.B, procs, cycles int, hold, pause time.Duration, extra ...string) []cycle {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"-file", filepath.Join(b.TempDir(), "lock-file"), "-procs", fmt.Sprint(procs),
		"-cycles", fmt.Sprint(cycles), "-hold", hold.String(), "-pause", pause.String()}
	cmd := exec.CommandContext(ctx, baselineBin, append(args, extra...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("baseline: %v\n%s", err, stderr.String())
	}
	var out []cycle
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var c cycle
		if _, err := fmt.Sscan(sc.Text(), &c.locker, &c.attempt, &c.grant, &c.release); err != nil {
			b.Fatalf("baseline line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	return out
}

// handoffs returns, for every grant that went to a locker that was already waiting when the
// previous holder released, release → grant in ns; and how many grants began before the previous
// release (an overlap: two holders at once as the trace tells it).
func handoffs(cs []cycle) (lat []float64, overlaps int) {
	cs = append([]cycle(nil), cs...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].grant < cs[j].grant })
	for i := 1; i < len(cs); i++ {
		prev, next := cs[i-1], cs[i]
		if next.locker == prev.locker || next.attempt >= prev.release {
			continue
		}
		if next.grant < prev.release {
			overlaps++
			continue
		}
		lat = append(lat, float64(next.grant-prev.release))
	}
	return lat, overlaps
}

// throughput is cycles per second per locker: each locker's cycles over the time from its first
// attempt to its last release, averaged over the lockers.
func throughput(cs []cycle) float64 {
	type span struct {
		n          int
		first, end int64
	}
	by := map[int64]*span{}
	for _, c := range cs {
		s := by[c.locker]
		if s == nil {
			s = &span{first: c.attempt}
			by[c.locker] = s
		}
		s.n++
		s.first, s.end = min(s.first, c.attempt), max(s.end, c.release)
	}
	sum := 0.0
	for _, s := range by {
		if s.end > s.first {
			sum += float64(s.n) / (float64(s.end-s.first) / 1e9)
		}
	}
	if len(by) == 0 {
		return 0
	}
	return sum / float64(len(by))
}

// handoffScenario: every locker holds the write lock for hold, releases it and pauses, n
// times, so that nearly every release hands the lock to a locker blocked in F_SETLKW.
func handoffScenario(n int, hold, pause time.Duration) string {
	return fmt.Sprintf(`# description: hand-off: hold, release, pause; the others wait in F_SETLKW
all: file@{file}
all: releaseif@+1s
repeat %d {
all: write style=wait
all: sleep %s
all: release
all: sleep %s
}
all: stop
`, n, hold, pause)
}

// conflictRate is lock.conflict events per second of waiting (style wait attempts).
func conflictRate(tr *tracefile.Trace) float64 {
	events, wait := 0, int64(0)
	for _, s := range spansNamed(tr, semconv.SpanAcquire) {
		if s.Open() || s.Attrs.Str(semconv.LockStyle) != semconv.StyleWait.String() {
			continue
		}
		wait += s.End - s.Start
		for _, e := range s.Events {
			if e.Name == semconv.EventConflict {
				events++
			}
		}
	}
	if wait == 0 {
		return 0
	}
	return float64(events) / (float64(wait) / 1e9)
}

// BenchmarkHandoff measures release → next waiter's grant: the bare baseline and lockprobe with
// the watcher at -poll 1h (its first look still comes 5 ms into a wait), 100ms (the default)
// and 1ms (a stress figure), all in one run, on 4 lockers holding 2 ms and pausing 1 ms.
func BenchmarkHandoff(b *testing.B) {
	const procs = 4
	n := short(100, 30)
	hold, pause := 2*time.Millisecond, time.Millisecond
	var base float64
	b.Run("bare", func(b *testing.B) {
		var lat []float64
		for i := 0; i < b.N; i++ {
			l, _ := handoffs(runBaseline(b, procs, n, hold, pause))
			lat = append(lat, l...)
		}
		base = median(lat)
		b.ReportMetric(us(base), "handoff-median-µs")
		b.ReportMetric(us(quantile(lat, 0.99)), "handoff-p99-µs")
	})
	for _, poll := range []string{"1h", "100ms", "1ms"} {
		b.Run("poll="+poll, func(b *testing.B) {
			var lat []float64
			overlaps, rate := 0, 0.0
			for i := 0; i < b.N; i++ {
				res := runLockprobe(b, handoffScenario(n, hold, pause), "-procs", fmt.Sprint(procs), "-poll", poll, "-on-hang", "wait", "-timeout", "60s")
				l, o := handoffs(cyclesOfTrace(res.trace))
				lat, overlaps = append(lat, l...), overlaps+o
				rate = conflictRate(res.trace)
			}
			m := median(lat)
			b.ReportMetric(us(m), "handoff-median-µs")
			b.ReportMetric(us(quantile(lat, 0.99)), "handoff-p99-µs")
			if base > 0 {
				b.ReportMetric(m/base, "ratio-to-bare")
			}
			b.ReportMetric(float64(overlaps), "overlaps")
			b.ReportMetric(rate, "conflict-events/s/waiter")
		})
	}
}

// overall is cycles per second per locker over the whole storm: all cycles over the time from
// the first attempt to the last release, divided by the lockers. Unlike throughput it does not
// depend on the order the kernel grants in: bare lockers whose releaser relocks 200 times in a
// row each finish in a short window of their own (a high rate each), interleaved ones share one
// long window, for the same cycles in the same time.
func overall(cs []cycle) float64 {
	if len(cs) == 0 {
		return 0
	}
	first, end := cs[0].attempt, cs[0].release
	lockers := map[int64]bool{}
	for _, c := range cs {
		first, end = min(first, c.attempt), max(end, c.release)
		lockers[c.locker] = true
	}
	if end <= first {
		return 0
	}
	return float64(len(cs)) / (float64(end-first) / 1e9) / float64(len(lockers))
}

// BenchmarkStormThroughput measures lock/unlock cycles per second per locker under the storm
// built-in (200 write/release cycles per locker, no hold), traced versus the bare baseline:
// the storm's as a whole (overall, the goal's measure: the same cycles over the same storm) and
// each locker's own window (throughput). The latter is no measure of cost: a bare locker's
// window depends on how many times in a row the kernel let its releaser relock, and three runs
// of the same bare program gave 61 000 to 279 000 cycles/s/locker (overall: 18 700 to 19 700).
func BenchmarkStormThroughput(b *testing.B) {
	procs := 10
	var base, baseAll float64
	b.Run("bare", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			cs := runBaseline(b, procs, 200, 0, 0)
			base, baseAll = throughput(cs), overall(cs)
		}
		b.ReportMetric(base, "cycles/s/locker")
		b.ReportMetric(baseAll, "overall-cycles/s/locker")
	})
	b.Run("traced", func(b *testing.B) {
		var tp, all float64
		for i := 0; i < b.N; i++ {
			res := runLockprobe(b, "storm", "-procs", fmt.Sprint(procs), "-on-hang", "wait", "-timeout", "120s")
			cs := cyclesOfTrace(res.trace)
			if len(cs) != procs*200 {
				b.Logf("%d cycles in the trace, want %d; verdict: %s", len(cs), procs*200, firstLine(res.stdout))
			}
			tp, all = throughput(cs), overall(cs)
		}
		b.ReportMetric(tp, "cycles/s/locker")
		b.ReportMetric(all, "overall-cycles/s/locker")
		if base > 0 {
			b.ReportMetric(tp/base, "ratio-to-bare")
		}
		if baseAll > 0 {
			b.ReportMetric(all/baseAll, "overall-ratio-to-bare")
		}
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
