package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// spanRecords counts the span records (partial and final) of a trace file, all of them and
// those of spans begun at or after since (unix ns), and returns its requests, encoded, as the
// lockers sent them.
func spanRecords(b *testing.B, path string, since int64) (records, after int, reqs [][]byte) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := tracefile.Requests(f, func(raw []byte) error {
		req, err := tracefile.Decode(raw)
		if err != nil {
			return err
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				records += len(ss.Spans)
				for _, s := range ss.Spans {
					if int64(s.StartTimeUnixNano) >= since {
						after++
					}
				}
			}
		}
		reqs = append(reqs, bytes.Clone(raw))
		return nil
	}); err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	return records, after, reqs
}

// BenchmarkSpanPipeline runs storm with 100 lockers and reports the span records the
// controller ingested per second while records flowed (records/s: the records of the storm's
// spans over the time from its first attempt to the root span's end, which the controller
// stamps once it has taken in every locker's last message, so the controller's lag behind the
// lockers is inside), the same over the storm's own time and over the whole run, the merged
// spans, and the messages lost (lockprobe.messages_lost on the root span). Then it feeds the
// same requests through the controller's write path in process (tracefile.Writer + Merger, no
// sockets) for the path's own capacity: the trace writer and the span merger on the requests
// as they arrived (encoded, as the controller gets them).
func BenchmarkSpanPipeline(b *testing.B) {
	procs := short(100, 20)
	var reqs [][]byte
	b.Run(fmt.Sprintf("storm/procs=%d", procs), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			res := runLockprobe(b, "storm", "-procs", fmt.Sprint(procs), "-on-hang", "wait", "-timeout", "300s")
			root := rootSpan(res.trace)
			if root == nil || root.Open() {
				b.Fatalf("no ended root span\nstdout: %s", res.stdout)
			}
			// The storm, from its first attempt to its last release. The root span also holds
			// the start-up and the storm's one-second start, when no record flows.
			first, last := int64(0), int64(0)
			for _, s := range res.trace.Spans {
				switch s.Name {
				case semconv.SpanAcquire, semconv.SpanHold:
					if first == 0 || s.Start < first {
						first = s.Start
					}
					last = max(last, s.End)
				}
			}
			var n, inStorm int
			n, inStorm, reqs = spanRecords(b, filepath.Join(res.out, tracefile.FileName), first)
			secs := float64(root.End-root.Start) / 1e9
			if root.End > first && first > 0 {
				b.ReportMetric(float64(inStorm)/(float64(root.End-first)/1e9), "records/s")
			}
			if last > first {
				b.ReportMetric(float64(inStorm)/(float64(last-first)/1e9), "storm-records/s")
			}
			b.ReportMetric(float64(n)/secs, "run-records/s")
			b.ReportMetric(float64(len(res.trace.Spans))/secs, "spans/s")
			b.ReportMetric(float64(root.Attrs.IntOr(semconv.RunLost, -1)), "messages-lost")
			b.ReportMetric(float64(n), "records")
			b.ReportMetric(res.wall.Seconds()-secs, "post-run-s")
			events := 0
			for _, s := range res.trace.Spans {
				events += 1 + len(s.Events)
			}
			b.ReportMetric(float64(events), "events")
		}
	})
	b.Run("write-path", func(b *testing.B) {
		if len(reqs) == 0 {
			b.Skip("no trace from the storm run")
		}
		t0 := time.Now()
		records := replayRequests(b, reqs, nil)
		b.ReportMetric(float64(records)/time.Since(t0).Seconds(), "records/s")
	})
	// The live path: the write path and the live analyzer's Observe of every touched span, as
	// the controller does for each message.
	b.Run("live-path", func(b *testing.B) {
		if len(reqs) == 0 {
			b.Skip("no trace from the storm run")
		}
		c0 := cpuTime()
		records := replayRequests(b, reqs, func() func(*tracefile.Span) {
			return analysis.New(analysis.Options{}).Observe
		})
		b.ReportMetric(float64(records)/(cpuTime()-c0).Seconds(), "records/cpu-s")
	})
}

// replayRequests runs the controller's write path b.N times over the storm's requests: each
// written to a new trace file and merged, and every touched span handed to the observer that
// newObserver makes for that round (none when nil). It returns the records merged.
func replayRequests(b *testing.B, reqs [][]byte, newObserver func() func(*tracefile.Span)) int {
	records := 0
	for i := 0; i < b.N; i++ {
		w, err := tracefile.Create(filepath.Join(b.TempDir(), tracefile.FileName))
		if err != nil {
			b.Fatal(err)
		}
		m := tracefile.NewMerger()
		var observe func(*tracefile.Span)
		if newObserver != nil {
			observe = newObserver()
		}
		for _, req := range reqs {
			if err := w.WriteEncoded(req); err != nil {
				b.Fatal(err)
			}
			touched, err := m.AddEncoded(req)
			if err != nil {
				b.Fatal(err)
			}
			if observe != nil {
				for _, s := range touched {
					observe(s)
				}
			}
			records += len(touched)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	return records
}
