//go:build !lockeronly

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/otlpexport"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
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

// Verdict forwards the record that control.WriteVerdict appends to the trace file: the root
// span is held back until Close, so the verdict is folded into it before it is sent.
func (w *forwarder) Verdict(rec *tracepb.ResourceSpans) {
	w.f.Enqueue([]*tracepb.ResourceSpans{rec})
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

// exportFormats are the values of export's -format.
var exportFormats = []string{"otlp", "otlp-json"}

func exportCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	format := fs.String("format", "otlp", "otlp: send the spans to a collector; otlp-json: write them as the OTLP JSON lines the Collector's otlpjsonfile receiver reads")
	endpoint := fs.String("otlp", "", "OTLP endpoint (http://host:4318 or grpc://host:4317); default: OTEL_EXPORTER_OTLP_* environment")
	outPath := fs.String("o", "", "with -format otlp-json: the file to write (default: standard output)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want one argument: a run's output folder or its trace file")
	}
	if !slices.Contains(exportFormats, *format) {
		return usagef("-format %q: want one of %s", *format, strings.Join(exportFormats, ", "))
	}
	path, err := tracePath(fs.Arg(0))
	if err != nil {
		return err
	}
	if *format == "otlp-json" {
		if *endpoint != "" {
			return usagef("-otlp goes with -format otlp, not otlp-json")
		}
		return exportJSON(path, *outPath, stdout)
	}
	if *outPath != "" {
		return usagef("-o goes with -format otlp-json")
	}
	opts := otlpexport.Options{Endpoint: *endpoint, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if !otlpexport.Enabled(opts) {
		return usagef("no collector: give -otlp URL or set OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if err := otlpexport.Check(opts); err != nil {
		return usagef("-otlp %s: %v", *endpoint, strings.TrimPrefix(err.Error(), "otlpexport: "))
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

// maxJSONLine bounds an OTLP JSON line: the Collector's otlpjsonfile receiver reads files with
// its file consumer, which splits lines past max_log_size (1 MiB by default).
const maxJSONLine = 512 << 10

// exportJSON writes the spans ExportFile would send, as OTLP JSON lines, to out ("" = stdout).
func exportJSON(path, out string, stdout io.Writer) error {
	tr, err := tracefile.Open(path)
	if err != nil {
		return usagef("%v", err)
	}
	w := stdout
	var f *os.File
	if out != "" {
		if f, err = os.Create(out); err != nil {
			return usagef("-o %s: %v", out, errors.Unwrap(err))
		}
		w = f
	}
	bw := bufio.NewWriter(w)
	err = tracefile.WriteJSON(bw, otlpexport.Complete(tr.Spans, ""), maxJSONLine)
	if ferr := bw.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write: %w", ferr)
	}
	if f != nil {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", out, cerr)
		}
	}
	if err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	return nil
}
