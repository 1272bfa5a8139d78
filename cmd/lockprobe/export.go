package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/otlpexport"
)

// forwarder wraps the OTLP forwarder for a run: spans go out as they arrive, and a collector
// that is down never holds the run up.
type forwarder struct {
	f *otlpexport.Forwarder
}

func newForwarder(endpoint string, log *slog.Logger) (*forwarder, error) {
	opts := otlpexport.Options{Endpoint: endpoint, Logger: log}
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

// Close flushes for at most a few seconds and says what did not reach the collector.
func (w *forwarder) Close() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := w.f.Close(ctx)
	if n := st.NotExported(); n > 0 || err != nil {
		return fmt.Sprintf("OTLP export: %d spans exported, %d not exported (%v)", st.Exported, n, err)
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
