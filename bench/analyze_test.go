package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// analyzeEvents sets the size of the synthetic trace: 10^6 events, the goal's size, unless told
// otherwise; the figures are also scaled to 10^6 for smaller traces.
var analyzeEvents = flag.Int("bench.events", 0, "events in BenchmarkAnalyze's synthetic trace (default 10^6, 2*10^4 with -short)")

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// synthTrace writes a trace of about events events (spans plus span events) the way a run
// writes it: lockers take turns at a write lock, each attempt waits behind the previous holder
// and records it as conflict owner. Partial records go one per request, as a locker sends them
// when nothing else is queued; final records in batches of 64.
func synthTrace(path string, events, lockers int) error {
	w, err := tracefile.Create(path)
	if err != nil {
		return err
	}
	defer w.Close()
	traceID := make([]byte, 16)
	traceID[0] = 0x42
	var next uint64
	newID := func() []byte {
		next++
		id := make([]byte, 8)
		binary.BigEndian.PutUint64(id, next)
		return id
	}
	const base = int64(1_700_000_000_000_000_000)
	scope := &commonpb.InstrumentationScope{Name: "github.com/lockprobe/lockprobe/probe"}
	rootID := newID()
	ctl := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str(semconv.ServiceName, "lockprobe"), str(semconv.LockerRole, "controller")}}
	line := func(res *resourcepb.Resource, spans ...*tracepb.Span) error {
		return w.WriteSpans(&tracepb.ResourceSpans{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{Scope: scope, Spans: spans}}})
	}
	rounds := events / 3
	end := base + int64(rounds+2)*int64(time.Millisecond)
	root := &tracepb.Span{TraceId: traceID, SpanId: rootID, Name: semconv.SpanRun, StartTimeUnixNano: uint64(base),
		Attributes: []*commonpb.KeyValue{num(semconv.RunProcs, int64(lockers)), num(semconv.RunPoll, 1e8), num(semconv.RunStartNS, base), num(semconv.RunLost, 0)}}
	if err := line(ctl, root); err != nil {
		return err
	}
	type proc struct {
		res  *resourcepb.Resource
		span *tracepb.Span
		done []*tracepb.Span // final records not yet exported
	}
	procs := make([]*proc, lockers)
	for l := range procs {
		res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			str(semconv.ServiceName, "lockprobe"), str(semconv.HostName, "vm"), num(semconv.ProcessPID, int64(1000+l)),
			num(semconv.LockerID, int64(l)), str(semconv.LockerRole, "locker"), str(semconv.Node, "vm"),
			str(semconv.FSType, "ext4"), num(semconv.FSMagic, 0xEF53), str(semconv.FSMountType, "ext4"),
			str(semconv.FSMountPoint, "/"), str(semconv.FSMountSource, "/dev/vda"), str(semconv.OSKernel, "6.18.0"),
			str(semconv.ToolVersion, "bench")}}
		s := &tracepb.Span{TraceId: traceID, SpanId: newID(), ParentSpanId: rootID, Name: semconv.SpanLocker, StartTimeUnixNano: uint64(base),
			Attributes: []*commonpb.KeyValue{num(semconv.LockerID, int64(l))}}
		procs[l] = &proc{res: res, span: s}
		if err := line(res, s); err != nil {
			return err
		}
	}
	flush := func(p *proc, force bool) error {
		if len(p.done) < 64 && !(force && len(p.done) > 0) {
			return nil
		}
		err := line(p.res, p.done...)
		p.done = p.done[:0]
		return err
	}
	step := int64(time.Millisecond)
	for r := 0; r < rounds; r++ {
		l := r % lockers
		p := procs[l]
		begin := base + int64(r)*step + 10_000
		grant := base + int64(r+1)*step
		lock := []*commonpb.KeyValue{num(semconv.LockerID, int64(l)), str(semconv.LockKind, semconv.KindPOSIX.String()), str(semconv.LockMode, semconv.ModeWrite.String()),
			num(semconv.LockStart, 0), num(semconv.LockLen, 0), str(semconv.FileLogical, "{file}"), str(semconv.FilePath, "/tmp/lock-file"), num(semconv.LockFD, 0)}
		acqAttrs := append(append([]*commonpb.KeyValue{}, lock...), str(semconv.LockStyle, semconv.StyleWait.String()), num(semconv.LockCmdLine, 4),
			str(semconv.LockCmdText, "all: write style=wait"), num(semconv.LockCmdIndex, int64(r/lockers)))
		acqID, holdID := newID(), newID()
		mk := func(id []byte, name string, start, end int64, attrs []*commonpb.KeyValue, events ...*tracepb.Span_Event) *tracepb.Span {
			return &tracepb.Span{TraceId: traceID, SpanId: id, ParentSpanId: p.span.SpanId, Name: name, StartTimeUnixNano: uint64(start),
				EndTimeUnixNano: uint64(end), Attributes: attrs, Events: events}
		}
		owner := (l + lockers - 1) % lockers
		ev := &tracepb.Span_Event{TimeUnixNano: uint64(begin + 5000), Name: semconv.EventConflict, Attributes: []*commonpb.KeyValue{
			num(semconv.LockOwnerPID, int64(1000+owner)), str(semconv.LockOwnerMode, semconv.ModeWrite.String()), num(semconv.LockOwnerStart, 0), num(semconv.LockOwnerLen, 0),
			num(semconv.LockOwnerLockerID, int64(owner)), str(semconv.LockOwnerClass, semconv.OwnerLocker.String()), str(semconv.LockOwnerSource, "getlk"), str(semconv.Node, "vm")}}
		with := func(attrs []*commonpb.KeyValue, more ...*commonpb.KeyValue) []*commonpb.KeyValue {
			return append(append([]*commonpb.KeyValue{}, attrs...), more...)
		}
		acqHex := fmt.Sprintf("%x", acqID)
		partial := mk(acqID, semconv.SpanAcquire, begin, 0, with(acqAttrs, str(semconv.LockOutcome, semconv.OutcomeWaiting.String())))
		conflict := mk(acqID, semconv.SpanAcquire, begin, 0, nil, ev)
		final := mk(acqID, semconv.SpanAcquire, begin, grant, with(acqAttrs, str(semconv.LockOutcome, semconv.OutcomeGranted.String()), num(semconv.LockTries, 1)), ev)
		hold := mk(holdID, semconv.SpanHold, grant, 0, with(lock, str(semconv.LockAcquireID, acqHex), str(semconv.LockHoldEnd, semconv.HoldOpen.String())))
		holdFinal := mk(holdID, semconv.SpanHold, grant, grant+step-1000, with(lock, str(semconv.LockAcquireID, acqHex), str(semconv.LockHoldEnd, semconv.HoldRelease.String())))
		for _, s := range []*tracepb.Span{partial, conflict, hold} {
			if err := line(p.res, s); err != nil {
				return err
			}
		}
		p.done = append(p.done, final, holdFinal)
		if err := flush(p, false); err != nil {
			return err
		}
	}
	for _, p := range procs {
		p.span.EndTimeUnixNano = uint64(end)
		p.done = append(p.done, p.span)
		if err := flush(p, true); err != nil {
			return err
		}
	}
	root.EndTimeUnixNano = uint64(end)
	root.Attributes = append(root.Attributes, str(semconv.RunEndReason, "done"))
	if err := line(ctl, root); err != nil {
		return err
	}
	return w.Close()
}

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
	if err := synthTrace(path, events, 10); err != nil {
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
	b.Run("split", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			c0 := cpuTime()
			tr, err := tracefile.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			c1 := cpuTime()
			analysis.Analyze(tr, analysis.Options{StuckAfter: 5 * time.Second})
			c2 := cpuTime()
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
