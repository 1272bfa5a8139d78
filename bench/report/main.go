// Command report turns the output of lockprobe's benchmarks (go test ./bench -bench .) into
// BENCHMARKS.md: one table row per figure with how it is measured, the command that gives it,
// its value, its goal and whether the goal was met, and the machine the figures come from.
//
//	go run ./bench/report -in .cache/bench.txt -out BENCHMARKS.md
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// row is one figure of the table: the value of metric unit on benchmark name.
type row struct {
	figure, how string
	bench, unit string
	goal        string
	ok          func(float64) bool // nil: no goal of its own
}

// floors names, for a figure that has one, the floor or bare figure measured beside it in the
// same run ("benchmark unit"): the table prints it in the figure's row.
var floors = map[string]string{
	"BenchmarkFireSpread/procs=10 spread-median-µs":           "BenchmarkFireSpread/floor/procs=10 spread-median-µs",
	"BenchmarkFireSpread/procs=10 spread-p99-µs":              "BenchmarkFireSpread/floor/procs=10 spread-p99-µs",
	"BenchmarkFireSpread/procs=10 late-median-µs":             "BenchmarkFireSpread/floor/procs=10 late-median-µs",
	"BenchmarkFireSpread/procs=100 spread-median-µs":          "BenchmarkFireSpread/floor/procs=100 spread-median-µs",
	"BenchmarkFireSpread/procs=100 spread-p99-µs":             "BenchmarkFireSpread/floor/procs=100 spread-p99-µs",
	"BenchmarkHandoff/poll=100ms handoff-median-µs":           "BenchmarkHandoff/bare handoff-median-µs",
	"BenchmarkHandoff/poll=100ms handoff-p99-µs":              "BenchmarkHandoff/bare handoff-p99-µs",
	"BenchmarkStormThroughput/traced cycles/s/locker":         "BenchmarkStormThroughput/bare cycles/s/locker",
	"BenchmarkStormThroughput/traced overall-cycles/s/locker": "BenchmarkStormThroughput/bare overall-cycles/s/locker",
	"BenchmarkSpanPipeline/flood/procs=100 records/s":         "BenchmarkSpanPipeline/write-path records/s",
	"BenchmarkStartup/procs=10 ready-s":                       "BenchmarkStartup/floor/procs=10 ready-s",
	"BenchmarkStartup/procs=100 ready-s":                      "BenchmarkStartup/floor/procs=100 ready-s",
	"BenchmarkStartup/procs=1000 ready-s":                     "BenchmarkStartup/floor/procs=1000 ready-s",
	"BenchmarkExecOverhead ms-ptrace-floor":                   "BenchmarkExecOverhead ms-bare",
	"BenchmarkExecOverhead ms-exec-ptrace":                    "BenchmarkExecOverhead ms-bare",
	"BenchmarkExecOverhead ms-ebpf-floor":                     "BenchmarkExecOverhead ms-bare",
	"BenchmarkExecOverhead ms-exec-ebpf":                      "BenchmarkExecOverhead ms-bare",
}

const cmd = "go test ./bench -run '^$' -benchtime 1x -bench "

func below(x float64) func(float64) bool   { return func(v float64) bool { return v < x } }
func atMost(x float64) func(float64) bool  { return func(v float64) bool { return v <= x } }
func atLeast(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }

var rows = []row{
	{"fire spread, 10 lockers, median", "max − min of lock.acquire start per shared `@+T` (lock.scheduled), 50 instants 100 ms apart, style=try; floor: bench/baseline -spread, as many plain Go processes (locked OS thread, 1 ns timer slack, absolute clock_nanosleep, stamp, F_SETLK own byte, unlock, sleep again) at as many instants", "BenchmarkFireSpread/procs=10", "spread-median-µs", "", nil},
	{"fire spread ratio, 10 lockers / floor", "median over median, same run", "BenchmarkFireSpread/procs=10", "ratio-to-floor", "≤ 1.3", atMost(1.3)},
	{"fire spread, 10 lockers, p99", "99th percentile over the instants", "BenchmarkFireSpread/procs=10", "spread-p99-µs", "", nil},
	{"first attempt after its instant, 10 lockers", "median of (earliest start − scheduled instant)", "BenchmarkFireSpread/procs=10", "late-median-µs", "", nil},
	{"fire spread, 100 lockers, median", "as above, 100 lockers", "BenchmarkFireSpread/procs=100", "spread-median-µs", "", nil},
	{"fire spread ratio, 100 lockers / floor", "median over median, same run", "BenchmarkFireSpread/procs=100", "ratio-to-floor", "≤ 2", atMost(2)},
	{"fire spread, 100 lockers, p99", "", "BenchmarkFireSpread/procs=100", "spread-p99-µs", "", nil},
	{"hand-off, bare, median", "release → grant of a locker already waiting; bench/baseline: 4 processes, F_SETLKW loop, hold 2 ms, pause 1 ms, 100 cycles", "BenchmarkHandoff/bare", "handoff-median-µs", "", nil},
	{"hand-off, bare, p99", "same", "BenchmarkHandoff/bare", "handoff-p99-µs", "", nil},
	{"hand-off, lockprobe -poll 100ms, median", "the same cycles as a scenario; hold end → next grant from the trace; tracing and watcher on", "BenchmarkHandoff/poll=100ms", "handoff-median-µs", "", nil},
	{"hand-off ratio, -poll 100ms / bare", "median over median, same run", "BenchmarkHandoff/poll=100ms", "ratio-to-bare", "≤ 1.3", atMost(1.3)},
	{"hand-off, lockprobe -poll 100ms, p99", "", "BenchmarkHandoff/poll=100ms", "handoff-p99-µs", "", nil},
	{"hand-off ratio, -poll 1h / bare", "watcher nearly off (its first look still comes 5 ms into a wait)", "BenchmarkHandoff/poll=1h", "ratio-to-bare", "", nil},
	{"hand-off ratio, -poll 1ms / bare", "watcher stress", "BenchmarkHandoff/poll=1ms", "ratio-to-bare", "", nil},
	{"lock.conflict events per waiter-second, -poll 100ms", "conflict events / total wait of style=wait attempts (changes only)", "BenchmarkHandoff/poll=100ms", "conflict-events/s/waiter", "", nil},
	{"lock.conflict events per waiter-second, -poll 1ms", "", "BenchmarkHandoff/poll=1ms", "conflict-events/s/waiter", "", nil},
	{"overlapping holds in the hand-off trace, -poll 100ms", "grants stamped before the previous holder's release (instrument error)", "BenchmarkHandoff/poll=100ms", "overlaps", "0", atMost(0)},
	{"F_GETLK cost", "CPU per call, in process, on a conflicting lock, 200 000 calls", "BenchmarkGetlk", "ns/call-cpu", "", nil},
	{"F_GETLK calls per waiter-second, -poll 100ms", "the watcher's schedule: one call per poll after the first look", "BenchmarkGetlk", "calls/s/waiter@100ms", "", nil},
	{"watcher CPU per waiter, -poll 100ms", "calls/s × cost, % of one core", "BenchmarkGetlk", "core-%/waiter@100ms", "", nil},
	{"watcher CPU per waiter, -poll 1ms", "", "BenchmarkGetlk", "core-%/waiter@1ms", "", nil},
	{"lock cycles over the whole storm, bare", "all cycles / (first attempt → last release) / lockers, 10 processes × 200 cycles, no hold: independent of the order the kernel grants in", "BenchmarkStormThroughput/bare", "overall-cycles/s/locker", "", nil},
	{"lock cycles over the whole storm, traced", "`storm` built-in, 10 lockers, -on-hang wait, from the trace; same measure", "BenchmarkStormThroughput/traced", "overall-cycles/s/locker", "", nil},
	{"lock cycle ratio, traced / bare", "over the whole storm, same run", "BenchmarkStormThroughput/traced", "overall-ratio-to-bare", "≥ 0.5", atLeast(0.5)},
	{"lock cycles per locker's own window, bare", "each locker's cycles / (its first attempt → its last release), mean: varies several-fold between runs of the same program (bare's releaser relocks up to 200 times in a row, so its own window is short), not a measure of cost", "BenchmarkStormThroughput/bare", "cycles/s/locker", "", nil},
	{"lock cycles per locker's own window, traced", "same", "BenchmarkStormThroughput/traced", "cycles/s/locker", "", nil},
	{"lock cycle ratio per locker's own window, traced / bare", "same run", "BenchmarkStormThroughput/traced", "ratio-to-bare", "", nil},
	{"span pipeline, 100 lockers", "span records ingested while records flow, `flood`: 100 lockers × 1000 write/release cycles, each on a byte of its own, so that nobody waits and the lockers make records faster than the controller takes them in (the source's pace is the next row); the records of spans begun from the first attempt on / (first lock.acquire start → root span end, when the controller has taken in every locker's last message)", "BenchmarkSpanPipeline/flood/procs=100", "records/s", "≥ 200 000 /s", atLeast(200000)},
	{"the flood's source, traced", "the same records / (first lock.acquire start → last lock.hold end): the lockers' own pace; above the line before, the controller was the slower", "BenchmarkSpanPipeline/flood/procs=100", "source-records/s", "", nil},
	{"the flood's source, bare", "bench/baseline -own: 100 plain processes, the same cycles on their own bytes, cycles/s × the traced run's records per cycle", "BenchmarkSpanPipeline/flood/procs=100", "bare-source-records/s", "", nil},
	{"messages lost, flood, 100 lockers", "lockprobe.messages_lost on the root span", "BenchmarkSpanPipeline/flood/procs=100", "messages-lost", "0", atMost(0)},
	{"span records ingested, storm, 100 lockers", "the measure above on the contended `storm` (the goal's measure before): its records flow only as fast as 100 contending lockers hand the lock over under the instrument, below the goal however fast the controller", "BenchmarkSpanPipeline/storm/procs=100", "records/s", "", nil},
	{"span records per second of the storm, 100 lockers", "the same records / the storm's own time (first lock.acquire start → last lock.hold end): the lockers' pace, without the controller's lag behind them", "BenchmarkSpanPipeline/storm/procs=100", "source-records/s", "", nil},
	{"span records per second of the whole run, 100 lockers", "all records / root span duration: also holds the start-up of 100 lockers and the storm's 1 s start, when no record flows", "BenchmarkSpanPipeline/storm/procs=100", "run-records/s", "", nil},
	{"merged spans per second, 100 lockers", "distinct spans / root span duration", "BenchmarkSpanPipeline/storm/procs=100", "spans/s", "", nil},
	{"messages lost, 100 lockers", "lockprobe.messages_lost on the root span", "BenchmarkSpanPipeline/storm/procs=100", "messages-lost", "0", atMost(0)},
	{"events in that run", "spans + span events in the trace", "BenchmarkSpanPipeline/storm/procs=100", "events", "", nil},
	{"time after the run ends (analysis, reports)", "process wall time − root span duration (start-up before the root span included): the live analysis finished, nothing read back", "BenchmarkSpanPipeline/storm/procs=100", "post-run-s", "< 1 s at 10^5 events", below(1)},
	{"controller live path, per CPU second", "the write path plus the live analyzer's Observe of every record, in process, per second of CPU: what one core of the controller ingests", "BenchmarkSpanPipeline/live-path", "records/cpu-s", "", nil},
	{"controller write path capacity", "the trace writer + span merger on the storm's requests, in process, no sockets: the bare ceiling of the line above", "BenchmarkSpanPipeline/write-path", "records/s", "", nil},
	{"start-up, 10 lockers", "root span start → latest lockprobe.locker span start (connected, clock-synced), `hold`; floor: as many `lockprobe-locker version` processes (the locker build, which lockers run) started at once, until the last has exited (the binary's own start on this machine)", "BenchmarkStartup/procs=10", "ready-s", "", nil},
	{"start-up, 100 lockers", "", "BenchmarkStartup/procs=100", "ready-s", "", nil},
	{"start-up, 1000 lockers", "", "BenchmarkStartup/procs=1000", "ready-s", "< 3 s", below(3)},
	{"start-up floor, 1000 × the full binary", "1000 `lockprobe version` started at once, until the last has exited (what lockers ran before the locker build; members on other nodes still do)", "BenchmarkStartup/floor-lockprobe/procs=1000", "ready-s", "", nil},
	{"start-up floor, 1000 × an empty Go program", "1000 processes of bench/noop (`func main() {}`) started at once, until the last has exited: the machine's own floor for 1000 Go processes", "BenchmarkStartup/floor-go/procs=1000", "ready-s", "", nil},
	{"messages lost, 1000 lockers", "lockprobe.messages_lost on the root span of that `hold` run (-timeout 3s)", "BenchmarkStartup/procs=1000", "messages-lost", "0", atMost(0)},
	{"verdict's exit status, 100 lockers", "verdict.json of that `hold` run: 0 (a long hold: what `hold` is)", "BenchmarkStartup/procs=100", "verdict-exit", "", nil},
	{"verdict's exit status, 1000 lockers", "the same at 1000 lockers: it must be what 100 give", "BenchmarkStartup/procs=1000", "verdict-exit", "0", atMost(0)},
	{"wall time of that run, 1000 lockers", "the whole `lockprobe run` process, start-up, 3 s timeout, shutdown, analysis and reports", "BenchmarkStartup/procs=1000", "run-wall-s", "", nil},
	{"start-up, 1000 lockers, failed", "1 when the run ended start-failed (no value above then)", "BenchmarkStartup/procs=1000", "start-failed", "absent", nil},
	{"RSS per locker", "VmRSS of the locker processes while they wait (`hold`, 100 lockers), mean", "BenchmarkStartup/procs=100", "rss-MiB/locker", "", nil},
	{"private memory per locker", "RssAnon, mean", "BenchmarkStartup/procs=100", "anon-MiB/locker", "", nil},
	{"detection latency, median", "`ring` -lock ofd -procs 4, default -poll: \"deadlock detected D after it formed\", 5 runs", "BenchmarkDetection", "detect-median-ms", "< 250 ms", below(250)},
	{"detection latency, max", "", "BenchmarkDetection", "detect-max-ms", "", nil},
	{"analyze: events in the synthetic trace", "contention trace written as lockers write it (each locker's sender: one request per 2 ms batch, one record per span: final if it ended in the batch, else partial)", "BenchmarkAnalyze/cli", "events", "10^6", nil},
	{"analyze: wall time", "`lockprobe analyze` on that trace (reading, analysis, reports)", "BenchmarkAnalyze/cli", "wall-s", "< 2 s", below(2)},
	{"analyze: CPU time", "user + system of the child", "BenchmarkAnalyze/cli", "cpu-s", "", nil},
	{"analyze: peak memory", "child's ru_maxrss", "BenchmarkAnalyze/cli", "peak-rss-MiB", "< 500 MiB", below(500)},
	{"report.html of 10^6 attempts", "`lockprobe analyze` of the same kind of trace with 3·10^6 events: the report's size; the timeline merges bars closer than a few pixels (test/e2e/browser TestMillionAttemptReport opens it in headless Chromium and prints the time to its load event)", "BenchmarkAnalyze/report", "report-MB", "< 10 MB", below(10)},
	{"analyze of 10^6 attempts (3·10^6 events), CPU", "user + system of that child", "BenchmarkAnalyze/report", "cpu-s", "", nil},
	{"analyze of 10^6 attempts, peak memory", "ru_maxrss", "BenchmarkAnalyze/report", "peak-rss-MiB", "", nil},
	{"analyze: the trace streamed into the model, CPU at 10^6", "tracefile.Stream into an analysis.Builder, in process: decompressing, decoding, merging, every attempt and hold into the model (what analyze does; two goroutines)", "BenchmarkAnalyze/split", "stream-cpu-s@1e6", "", nil},
	{"analyze: the rest of the analysis, CPU at 10^6", "Builder.Finish: indexes, detectors, statistics", "BenchmarkAnalyze/split", "finish-cpu-s@1e6", "", nil},
	{"analyze: floor of reading, CPU at 10^6", "only decompressing the file and walking its frames (tracefile.Requests, nothing decoded)", "BenchmarkAnalyze/split", "frames-cpu-s@1e6", "", nil},
	{"reading the whole trace, CPU at 10^6", "tracefile.Open, in process: every span merged and kept (export, watch)", "BenchmarkAnalyze/split", "read-cpu-s@1e6", "", nil},
	{"the analysis of those spans, CPU at 10^6", "analysis.Analyze, in process", "BenchmarkAnalyze/split", "analysis-cpu-s@1e6", "", nil},
	{"trace bytes per event", "file size / events (trace.pb.zst: OTLP protobuf requests, zstd)", "BenchmarkAnalyze/split", "bytes/event", "≤ 300", atMost(300)},
	{"trace bytes per event, as OTLP JSON lines", "the same requests as pdata's OTLP JSON lines (the file's format before)", "BenchmarkAnalyze/json", "bytes/event", "", nil},
	{"exec: lock loop, bare", "/usr/bin/python3, 20 000 F_SETLK write + unlock pairs on one byte (40 000 lock calls), the loop's own perf_counter time, median of 5 rounds interleaved with the lines below", "BenchmarkExecOverhead", "ms-bare", "", nil},
	{"exec: ptrace floor", "the same loop under ptracer with a handler that does nothing (bench/tracefloor): seccomp stop at each call, a second stop at each lock request's return", "BenchmarkExecOverhead", "ms-ptrace-floor", "", nil},
	{"exec: ptrace floor / bare", "median over median, same run", "BenchmarkExecOverhead", "ptrace-floor/bare", "", nil},
	{"exec -tracer ptrace", "`lockprobe exec -tracer ptrace`: every attempt and hold a span in the trace", "BenchmarkExecOverhead", "ms-exec-ptrace", "", nil},
	{"exec -tracer ptrace / bare", "median over median, same run", "BenchmarkExecOverhead", "exec-ptrace/bare", "", nil},
	{"exec -tracer ptrace / ptrace floor", "what recording adds to tracing", "BenchmarkExecOverhead", "exec-ptrace/floor", "≤ 1.5", atMost(1.5)},
	{"exec -tracer ptrace, per lock call", "(exec − bare) / 40 000", "BenchmarkExecOverhead", "µs/call-exec-ptrace", "", nil},
	{"exec: eBPF floor", "the loop under ebpftracer with a handler that does nothing: tracepoint programs, ring buffer, reader", "BenchmarkExecOverhead", "ms-ebpf-floor", "", nil},
	{"exec: eBPF floor / bare", "median over median, same run", "BenchmarkExecOverhead", "ebpf-floor/bare", "", nil},
	{"exec -tracer ebpf", "`lockprobe exec -tracer ebpf` (root, kernel BTF)", "BenchmarkExecOverhead", "ms-exec-ebpf", "", nil},
	{"exec -tracer ebpf / bare", "median over median, same run", "BenchmarkExecOverhead", "exec-ebpf/bare", "", nil},
	{"exec -tracer ebpf / eBPF floor", "what recording adds to tracing", "BenchmarkExecOverhead", "exec-ebpf/floor", "", nil},
	{"exec -tracer ebpf, per lock call", "(exec − bare) / 40 000", "BenchmarkExecOverhead", "µs/call-exec-ebpf", "", nil},
	{"exec -tracer ebpf, whole command", "wall of `lockprobe exec` with the interpreter's start, the analysis and the reports", "BenchmarkExecOverhead", "ms-wall-exec-ebpf", "", nil},
	{"reading the trace as OTLP JSON lines, CPU at 10^6", "tracefile.Open of those lines (pdata's JSON decoder)", "BenchmarkAnalyze/json", "read-cpu-s@1e6", "", nil},
}

// benchLine matches "BenchmarkName-2   1   123 ns/op   4.5 unit ...".
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parse reads benchmark output: metrics by benchmark name and unit, and the "# key: value" notes.
func parse(r io.Reader) (map[string]map[string]float64, map[string]string, []string, error) {
	metrics := map[string]map[string]float64{}
	notes := map[string]string{}
	var raw []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "# "), ": "); ok && strings.HasPrefix(line, "# ") {
			notes[k] = v
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		raw = append(raw, line)
		f := strings.Fields(m[2])
		vals := map[string]float64{}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			vals[f[i+1]] = v
		}
		metrics[m[1]] = vals
	}
	return metrics, notes, raw, sc.Err()
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func machine() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	model, mem := "unknown", "unknown"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				mem = fmt.Sprintf("%.0f GiB", kb/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%d CPUs (nproc), %s, %s RAM, kernel %s, %s", runtime.NumCPU(), model, mem, unix.ByteSliceToString(u.Release[:]), runtime.Version())
}

func render(w io.Writer, metrics map[string]map[string]float64, notes map[string]string, raw []string, shortRun bool, findings []byte) {
	fmt.Fprintln(w, "# lockprobe benchmarks")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Generated by `make bench` (bench/report from the output of `go test ./bench -bench .`); do not edit by hand.")
	fmt.Fprintln(w, "Every figure comes from one run; ratios compare runs made side by side in that run. The benchmarks")
	fmt.Fprintln(w, "assert nothing: a missed goal is a finding, not a test failure.")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- machine: %s\n", machine())
	fmt.Fprintf(w, "- generated: %s", time.Now().UTC().Format(time.RFC3339))
	if shortRun {
		fmt.Fprint(w, " (quick variant, BENCH_SHORT=1: fewer instants and lockers, smaller traces)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- load average (1, 5, 15 min) before / after: %s / %s — figures of latency and spread are only as good as\n  the machine was quiet\n", notes["load-before"], notes["load-after"])
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| figure | how measured | command | value | floor / bare, same run | goal | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	lookup := func(bench, unit string) (float64, bool) {
		v, ok := metrics[bench][unit]
		return v, ok
	}
	for _, r := range rows {
		value, met, floor := "not run", "", ""
		if v, ok := lookup(r.bench, r.unit); ok {
			value = format(v) + " " + r.unit
			if r.ok != nil {
				met = map[bool]string{true: "yes", false: "**no**"}[r.ok(v)]
			}
		}
		if ref, ok := floors[r.bench+" "+r.unit]; ok {
			fb, fu, _ := strings.Cut(ref, " ")
			floor = "not run"
			if v, ok := lookup(fb, fu); ok {
				floor = format(v) + " " + fu
			}
		}
		name, _, _ := strings.Cut(r.bench, "/")
		fmt.Fprintf(w, "| %s | %s | `%s%s` | %s | %s | %s | %s |\n", r.figure, r.how, cmd, "'^"+name+"$'", value, floor, r.goal, met)
	}
	if len(findings) > 0 {
		fmt.Fprintln(w)
		w.Write(bytes.TrimSpace(findings))
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Raw output")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "```")
	for _, l := range raw {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w, "```")
}

func run(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fs.String("in", "", "benchmark output (default stdin)")
	out := fs.String("out", "BENCHMARKS.md", "file to write")
	shortRun := fs.Bool("short", false, "the output is of the quick variant")
	findingsPath := fs.String("findings", "", "a markdown file of findings (from profiles) to keep in the output, after the table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var r io.Reader = os.Stdin
	if *in != "" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("open benchmark output: %w", err)
		}
		defer f.Close()
		r = f
	}
	metrics, notes, raw, err := parse(r)
	if err != nil {
		return fmt.Errorf("read benchmark output: %w", err)
	}
	if len(metrics) == 0 {
		return errors.New("no benchmark lines in the input")
	}
	var findings []byte
	if *findingsPath != "" {
		if findings, err = os.ReadFile(*findingsPath); err != nil {
			return fmt.Errorf("read findings: %w", err)
		}
	}
	var buf bytes.Buffer
	render(&buf, metrics, notes, raw, *shortRun, findings)
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}
