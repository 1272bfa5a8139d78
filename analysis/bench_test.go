package analysis_test

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

const benchBase = int64(1_700_000_000_000_000_000)

// kv is one attribute.
func kv(k string, v any) tracefile.Attr { return tracefile.Attr{Key: k, Value: v} }

func span(id int, name string, start, end int64, attrs tracefile.Attrs) *tracefile.Span {
	return &tracefile.Span{TraceID: "t", SpanID: fmt.Sprintf("%016x", id), Name: name, Start: start, End: end,
		Attrs: attrs, Resource: tracefile.Attrs{}}
}

// contention makes a trace of about n events (spans and span events): lockers take turns at a
// write (or, one round in four, read) lock on one file, each waiting behind the previous holder
// and recording it as conflict owner.
func contention(n, lockers int) *tracefile.Trace {
	var spans []*tracefile.Span
	id := 0
	add := func(s *tracefile.Span) { id++; s.SpanID = fmt.Sprintf("%016x", id); spans = append(spans, s) }
	add(span(0, semconv.SpanRun, benchBase, 0, tracefile.Attrs{kv(semconv.RunPoll, int64(1e8))}))
	for l := 0; l < lockers; l++ {
		add(span(0, semconv.SpanLocker, benchBase, 0, tracefile.Attrs{kv(semconv.LockerID, int64(l)), kv(semconv.Node, "n0"), kv(semconv.ProcessPID, int64(1000+l))}))
	}
	const step = int64(1e6) // 1 ms hold each
	rounds := n / 3
	for r := 0; r < rounds; r++ {
		l := int64(r % lockers)
		grant := benchBase + int64(r+1)*step
		begin := grant - step + 10_000
		mode := semconv.ModeWrite.String()
		if r%4 == 3 {
			mode = semconv.ModeRead.String()
		}
		lock := tracefile.Attrs{kv(semconv.LockKind, semconv.KindPOSIX.String()), kv(semconv.LockMode, mode), kv(semconv.LockStart, int64(0)), kv(semconv.LockLen, int64(0)), kv(semconv.FileLogical, "{file}"), kv(semconv.LockerID, l)}
		at := tracefile.Attrs{kv(semconv.LockOutcome, semconv.OutcomeGranted.String()), kv(semconv.LockStyle, semconv.StyleWait.String()), kv(semconv.LockScheduled, begin-1000)}
		at = append(at, lock...)
		a := span(0, semconv.SpanAcquire, begin, grant, at)
		a.Events = []tracefile.Event{{Time: begin + 5000, Name: semconv.EventConflict, Attrs: tracefile.Attrs{kv(semconv.LockOwnerClass, semconv.OwnerLocker.String()), kv(semconv.LockOwnerLockerID, int64((r+lockers-1)%lockers)), kv(semconv.LockOwnerMode, semconv.ModeWrite.String()), kv(semconv.LockOwnerPID, int64(1000+(r+lockers-1)%lockers))}}}
		add(a)
		h := tracefile.Attrs{kv(semconv.LockHoldEnd, semconv.HoldRelease.String()), kv(semconv.LockAcquireID, a.SpanID)}
		h = append(h, lock...)
		add(span(0, semconv.SpanHold, grant, grant+step-1000, h))
	}
	return &tracefile.Trace{Spans: spans}
}

// ring makes n lockers, each holding byte i and blocked on byte i+1 mod n, at the end of a run.
func ring(n int) (*tracefile.Trace, int64) {
	var spans []*tracefile.Span
	id := 0
	add := func(s *tracefile.Span) { id++; s.SpanID = fmt.Sprintf("%016x", id); spans = append(spans, s) }
	end := benchBase + 10e9
	for l := 0; l < n; l++ {
		add(span(0, semconv.SpanLocker, benchBase, end, tracefile.Attrs{kv(semconv.LockerID, int64(l)), kv(semconv.Node, "n0"), kv(semconv.ProcessPID, int64(1000+l))}))
		lock := func(start int64) tracefile.Attrs {
			return tracefile.Attrs{kv(semconv.LockKind, semconv.KindOFD.String()), kv(semconv.LockMode, semconv.ModeWrite.String()), kv(semconv.LockStart, start), kv(semconv.LockLen, int64(1)), kv(semconv.FileLogical, "{file}"), kv(semconv.LockerID, int64(l))}
		}
		h := lock(int64(l))
		h.Set(semconv.LockHoldEnd, semconv.HoldRunEnd.String())
		add(span(0, semconv.SpanHold, benchBase+int64(l), end, h))
		w := lock(int64((l + 1) % n))
		w.Set(semconv.LockOutcome, semconv.OutcomeBlocked.String())
		add(span(0, semconv.SpanAcquire, benchBase+1e9+int64(l), end, w))
	}
	return &tracefile.Trace{Spans: spans}, end
}

func benchAnalyze(b *testing.B, n int) {
	if testing.Short() && n > 1e5 {
		b.Skip("slow")
	}
	tr := contention(n, 100)
	events := 0
	for _, s := range tr.Spans {
		events += 1 + len(s.Events)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	var peak uint64
	for i := 0; i < b.N; i++ {
		res := analysis.Analyze(tr, analysis.Options{})
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		if res.Verdict.Class != analysis.ClassHealthy {
			b.Fatalf("verdict %s, findings %d", res.Verdict.Class, len(res.Findings))
		}
	}
	b.ReportMetric((cpuTime()-cpu0)/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(events), "events")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(events), "ns/event")
	b.ReportMetric(float64(peak)/(1<<20), "heap-MiB")
}

func BenchmarkAnalyze1e5(b *testing.B) { benchAnalyze(b, 1e5) }
func BenchmarkAnalyze1e6(b *testing.B) { benchAnalyze(b, 1e6) }

// BenchmarkCycles10k: the wait-for graph of a ring of 10^4 owners and its cycle, as Check does
// it live, and the whole analysis of the same trace.
func BenchmarkCycles10k(b *testing.B) {
	tr, end := ring(10_000)
	b.Run("check", func(b *testing.B) {
		a := analysis.New(analysis.Options{})
		for _, s := range tr.Spans {
			a.Observe(s)
		}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			fs := a.Check(end)
			if len(fs) == 0 || fs[0].Class != analysis.ClassDeadlock || len(fs[0].Lockers) != 10_000 {
				b.Fatalf("no deadlock of 10^4: %d findings", len(fs))
			}
		}
	})
	b.Run("finalize", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			res := analysis.Analyze(tr, analysis.Options{})
			if res.Verdict.Class != analysis.ClassDeadlock {
				b.Fatalf("verdict %s", res.Verdict.Class)
			}
		}
	})
}

// cpuTime is the process's user + system CPU time in seconds: on a loaded machine it says more
// than the wall clock.
func cpuTime() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
