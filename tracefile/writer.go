// Package tracefile writes and reads lockprobe's trace file, trace.jsonl: one OTLP
// ExportTraceServiceRequest per line in the OTLP JSON encoding (lowerCamelCase field names,
// trace and span ids in hex), so that OpenTelemetry tools read it as it is.
//
// The file is append-only and written as spans arrive. A span may appear more than once: first
// as a partial record (end time 0: it has started, perhaps gathered events, but not ended), later
// as the final record. Reading merges the records of one span; a span whose final record never
// came is still open at the end of the file.
package tracefile

import (
	"fmt"
	"os"
	"sync"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// Writer appends requests to a trace file, one line each, and pushes every line to the
// operating system at once so that a crash loses at most the line being written.
type Writer struct {
	mu    sync.Mutex
	f     *os.File
	buf   []byte
	lines int
	err   error
}

// Create creates (or truncates) the trace file at path.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create trace file: %w", err)
	}
	return &Writer{f: f}, nil
}

// Write appends one request as one line.
func (w *Writer) Write(req *coltracepb.ExportTraceServiceRequest) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.buf = append(appendRequest(w.buf[:0], req), '\n')
	if _, err := w.f.Write(w.buf); err != nil {
		w.err = fmt.Errorf("write trace file: %w", err)
		return w.err
	}
	w.lines++
	return nil
}

// Lines returns how many lines were written.
func (w *Writer) Lines() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines
}

// Close syncs and closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.err
	}
	serr := w.f.Sync()
	cerr := w.f.Close()
	w.f = nil
	if w.err != nil {
		return w.err
	}
	if serr != nil {
		return fmt.Errorf("sync trace file: %w", serr)
	}
	if cerr != nil {
		return fmt.Errorf("close trace file: %w", cerr)
	}
	return nil
}

// MarshalLine renders a request in the OTLP JSON encoding, on one line.
func MarshalLine(req *coltracepb.ExportTraceServiceRequest) ([]byte, error) {
	return appendRequest(nil, req), nil
}

// UnmarshalLine parses one line written by MarshalLine (or any OTLP JSON exporter).
func UnmarshalLine(line []byte) (*coltracepb.ExportTraceServiceRequest, error) {
	b, err := rewriteIDs(line, hexToBase64)
	if err != nil {
		return nil, err
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("parse spans: %w", err)
	}
	return req, nil
}

// Append opens an existing trace file to add lines at its end (the verdict, after analysis).
func Append(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("open trace file: %w", err)
	}
	return &Writer{f: f}, nil
}

// WriteSpans appends one line holding the given resource spans.
func (w *Writer) WriteSpans(rss ...*tracepb.ResourceSpans) error {
	return w.Write(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
}
