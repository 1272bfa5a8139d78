package bench

import (
	"bufio"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/tracefile"
)

// analyzeEvents sets the size of the synthetic trace: 10^6 events, the goal's size, unless told
// otherwise; the figures are also scaled to 10^6 for smaller traces.
var analyzeEvents = flag.Int("bench.events", 0, "events in BenchmarkAnalyze's synthetic trace (default 10^6, 2*10^4 with -short)")

// BenchmarkAnalyze times `lockprobe analyze` on a synthetic trace (-bench.events; the goal is
// for 10^6) and reports its wall time, CPU time and peak resident memory (the child's rusage),
// the same scaled linearly to 10^6 events, and, in process, how the time splits between reading
// the trace file and the analysis itself.
func BenchmarkAnalyze(b *testing.B) {
	events := *analyzeEvents
	if events <= 0 {
		events = short(1_000_000, 20_000)
	}
	dir := b.TempDir()
	path := filepath.Join(dir, tracefile.FileName)
	if err := lptest.SynthTrace(path, events, 10); err != nil {
		b.Fatal(err)
	}
	scale := 1e6 / float64(events)
	b.Run("cli", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			cmd := exec.CommandContext(ctx, lockprobeBin, "analyze", "-out", b.TempDir(), path)
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			wall := time.Since(t0)
			cancel()
			if _, exit := err.(*exec.ExitError); err != nil && !exit {
				b.Fatalf("analyze: %v\n%s", err, out)
			}
			if code := cmd.ProcessState.ExitCode(); code == 1 || code == 2 {
				b.Fatalf("analyze: exit %d\n%s", code, out)
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
			b.ReportMetric(float64(events), "events")
			b.ReportMetric(wall.Seconds(), "wall-s")
			b.ReportMetric(cpu, "cpu-s")
			b.ReportMetric(float64(ru.Maxrss)/1024, "peak-rss-MiB")
			b.ReportMetric(wall.Seconds()*scale, "wall-s@1e6")
			b.ReportMetric(cpu*scale, "cpu-s@1e6")
		}
	})
	// report.html of 10^6 attempts (3·10^6 events): its size, the goal being < 10 MB with the
	// timeline aggregated beyond what a screen shows (test/e2e/browser opens such a report and
	// prints how long Chromium takes).
	b.Run("report", func(b *testing.B) {
		attempts := short(1_000_000, 10_000)
		big := filepath.Join(b.TempDir(), tracefile.FileName)
		if err := lptest.SynthTrace(big, 3*attempts, 10); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			out := b.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			cmd := exec.CommandContext(ctx, lockprobeBin, "analyze", "-out", out, big)
			t0 := time.Now()
			msg, err := cmd.CombinedOutput()
			wall := time.Since(t0)
			cancel()
			if code := cmd.ProcessState.ExitCode(); err != nil && (code == 1 || code == 2 || code == -1) {
				b.Fatalf("analyze: %v\n%s", err, msg)
			}
			st, err := os.Stat(filepath.Join(out, "report.html"))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(attempts), "attempts")
			b.ReportMetric(float64(st.Size())/1e6, "report-MB")
			b.ReportMetric(wall.Seconds(), "wall-s")
			b.ReportMetric((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(), "cpu-s")
			b.ReportMetric(float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)/1024, "peak-rss-MiB")
		}
	})
	// split: where the CPU goes, in process. What `analyze` does: the trace streamed into the
	// model (stream: decompressing, decoding, merging, each attempt and hold into the model)
	// and the rest of the analysis (finish); its floor, only decompressing the file and walking
	// its frames (frames). The whole-file reading (read: tracefile.Open, which export and watch
	// use, and the OTLP JSON figure below compares with) and the analysis of those spans.
	b.Run("split", func(b *testing.B) {
		opts := analysis.Options{StuckAfter: 5 * time.Second}
		for i := 0; i < b.N; i++ {
			c0 := cpuTime()
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tracefile.Requests(f, func([]byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
			f.Close()
			c1 := cpuTime()
			bld := analysis.NewBuilder(opts)
			rest, err := tracefile.StreamFile(path, tracefile.StreamOptions{Release: analysis.Streamed, Done: bld.Add})
			if err != nil {
				b.Fatal(err)
			}
			c2 := cpuTime()
			bld.Finish(rest)
			c3 := cpuTime()
			b.ReportMetric((c1-c0).Seconds()*scale, "frames-cpu-s@1e6")
			b.ReportMetric((c2-c1).Seconds()*scale, "stream-cpu-s@1e6")
			b.ReportMetric((c3-c2).Seconds()*scale, "finish-cpu-s@1e6")
			c0 = cpuTime()
			tr, err := tracefile.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			c1 = cpuTime()
			analysis.Analyze(tr, opts)
			c2 = cpuTime()
			b.ReportMetric((c1-c0).Seconds()*scale, "read-cpu-s@1e6")
			b.ReportMetric((c2-c1).Seconds()*scale, "analysis-cpu-s@1e6")
			if st, err := os.Stat(path); err == nil {
				b.ReportMetric(float64(st.Size())/float64(events), "bytes/event")
			}
		}
	})
	// The same records as OTLP JSON lines (the format the trace file had before, which the
	// Collector's pdata writes and reads): what the file would weigh and cost to read as JSON.
	b.Run("json", func(b *testing.B) {
		jsonPath := filepath.Join(b.TempDir(), tracefile.LegacyFileName)
		if err := jsonCopy(path, jsonPath); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			c0 := cpuTime()
			if _, err := tracefile.Open(jsonPath); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric((cpuTime()-c0).Seconds()*scale, "read-cpu-s@1e6")
			if st, err := os.Stat(jsonPath); err == nil {
				b.ReportMetric(float64(st.Size())/float64(events), "bytes/event")
			}
		}
	})
}

// jsonCopy writes the requests of a trace file as OTLP JSON lines.
func jsonCopy(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(out, 1<<20)
	if _, err := tracefile.Requests(in, func(raw []byte) error {
		req, err := tracefile.Decode(raw)
		if err != nil {
			return err
		}
		line, err := tracefile.MarshalJSON(req)
		if err != nil {
			return err
		}
		_, err = w.Write(append(line, '\n'))
		return err
	}); err != nil {
		out.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// cpuTime is the CPU time this process has used so far (user + system): figures that a busy
// machine disturbs less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
