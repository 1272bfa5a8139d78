package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/control"
	"github.com/lockprobe/lockprobe/otlpexport"
	"github.com/lockprobe/lockprobe/semconv"
)

// forwarder wraps the OTLP forwarder for a run: spans go out as they arrive, and a collector
// that is down never holds the run up.
type forwarder struct {
	f *otlpexport.Forwarder
}

// heldSpans are the spans that get records after their final one: the root gets the verdict
// once the run has been analysed, lockers and observers the controller's locker.exit events
// once their process is reaped. A collector would store such a late record as a second span
// (or, if partial, never get it), so their final records wait for Close.
var heldSpans = []string{semconv.SpanRun, semconv.SpanLocker, semconv.SpanObserver}

func newForwarder(endpoint string, log *slog.Logger) (*forwarder, error) {
	opts := otlpexport.Options{Endpoint: endpoint, Logger: log, Hold: heldSpans}
	if !otlpexport.Enabled(opts) {
		return nil, nil
	}
	f, err := otlpexport.New(context.Background(), opts)
	if err != nil {
		return nil, usagef("-otlp %s: %v", endpoint, err)
	}
	return &forwarder{f: f}, nil
}

func (w *forwarder) Enqueue(rs []*tracepb.ResourceSpans) { w.f.Enqueue(rs) }

// Verdict forwards the record that control.WriteVerdict appends to the trace file: the
// verdict as attributes and an event of the root span, so that a search by lock.verdict in
// the collector finds the run. It must come before Close, which sends the root.
func (w *forwarder) Verdict(res *control.Result, class string, exit int, summary string) {
	traceID, err1 := hex.DecodeString(res.TraceID)
	rootID, err2 := hex.DecodeString(res.RootSpanID)
	if err1 != nil || err2 != nil {
		return // the controller made these ids; the trace file has the verdict anyway
	}
	attrs := func(extra ...*commonpb.KeyValue) []*commonpb.KeyValue {
		return append([]*commonpb.KeyValue{strAttr(semconv.Verdict, class), intAttr(semconv.VerdictExit, int64(exit))}, extra...)
	}
	end := uint64(res.End.UnixNano())
	span := &tracepb.Span{TraceId: traceID, SpanId: rootID, Name: semconv.SpanRun,
		StartTimeUnixNano: uint64(res.Start.UnixNano()), EndTimeUnixNano: end, Attributes: attrs(),
		Events: []*tracepb.Span_Event{{TimeUnixNano: end, Name: semconv.EventVerdict,
			Attributes: attrs(strAttr("lock.verdict.summary", summary))}}}
	// Folded into the held root, whose resource and scope it keeps.
	w.f.Enqueue([]*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span}}}}})
}

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intAttr(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// Close flushes for at most a few seconds and says what did not reach the collector.
func (w *forwarder) Close() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := w.f.Close(ctx)
	if err != nil {
		// One summary line: the error joins the count with the first upload error.
		return fmt.Sprintf("OTLP export: %d spans exported, %d not exported: %s",
			st.Exported, st.NotExported(), strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return fmt.Sprintf("OTLP export: %d spans exported", st.Exported)
}

func exportCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	endpoint := fs.String("otlp", "", "OTLP endpoint (http://host:4318 or grpc://host:4317); default: OTEL_EXPORTER_OTLP_* environment")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want one argument: a run's output folder or its trace.jsonl")
	}
	opts := otlpexport.Options{Endpoint: *endpoint, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if !otlpexport.Enabled(opts) {
		return usagef("no collector: give -otlp URL or set OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	path, err := tracePath(fs.Arg(0))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	st, err := otlpexport.ExportFile(ctx, path, opts)
	fmt.Fprintf(stdout, "exported %d spans, %d not exported\n", st.Exported, st.NotExported())
	if err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	return nil
}
