// Package tracefile writes and reads lockprobe's trace file, trace.pb.zst: the run's span
// records as OTLP protobuf ExportTraceServiceRequests, each preceded by its length (4 bytes,
// big-endian: the framing of the OpenTelemetry Collector's file exporter with format proto), the
// whole a zstd stream. `zstd -d` gives the Collector's format back; `lockprobe export -format
// otlp-json` the OTLP JSON lines its otlpjsonfile receiver reads. The reader also reads those
// JSON lines (an older run's trace.jsonl) and the uncompressed framing.
//
// The file is append-only and written as spans arrive; every request is flushed to the
// operating system at once, so a crash loses at most the request being written (with
// Background, the few requests queued for the writer's goroutine). A span may
// appear more than once: first as a partial record (end time 0: it has started, perhaps gathered
// events, but not ended), later as the final record. Reading merges the records of one span
// (Span.Merge); a span whose final record never came is still open at the end of the file.
package tracefile

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"github.com/klauspost/compress/zstd"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// FileName is the trace file's name inside a run's output folder; LegacyFileName that of runs
// made before it (OTLP JSON lines), which Open still reads.
const (
	FileName       = "trace.pb.zst"
	LegacyFileName = "trace.jsonl"
)

// Writer appends requests to a trace file.
type Writer struct {
	mu       sync.Mutex
	f        *os.File
	zw       *zstd.Encoder
	hdr      [4]byte
	requests int
	err      error
	// Background: the requests WriteEncoded queued for the goroutine that writes them.
	qmu   sync.Mutex
	queue chan []byte
	done  chan struct{}
}

// Create creates (or truncates) the trace file at path.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create trace file: %w", err)
	}
	return newWriter(f)
}

// Append opens an existing trace file to add requests at its end (the verdict, after analysis),
// in a zstd frame of their own: a zstd stream may hold several.
func Append(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("open trace file: %w", err)
	}
	return newWriter(f)
}

func newWriter(f *os.File) (*Writer, error) {
	// The fastest level: at lockprobe's rates it costs a few percent of a core, and the records
	// repeat so much that it still makes them twenty times smaller. One goroutine: the encoder
	// runs on the caller's, which the controller has to spare.
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("trace file: %w", err)
	}
	return &Writer{f: f, zw: zw}, nil
}

// Background makes the Writer compress and write on a goroutine of its own: WriteEncoded then
// queues the request (waiting only when depth requests are queued already) and returns; they
// are written in the order queued, and Close writes what is queued before it closes. The
// controller's loop spent a third of its time per record in zstd and the write, the machine's
// other core idle (bench/FINDINGS.md). A queued request's bytes must not change. An error of
// the goroutine's is returned by the next WriteEncoded and by Close.
func (w *Writer) Background(depth int) {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	if w.queue != nil {
		return
	}
	w.queue, w.done = make(chan []byte, depth), make(chan struct{})
	go func(queue <-chan []byte, done chan<- struct{}) {
		defer close(done)
		for b := range queue {
			_ = w.write(b) // kept in w.err
		}
	}(w.queue, w.done)
}

// Write appends one request.
func (w *Writer) Write(req *coltracepb.ExportTraceServiceRequest) error {
	b, err := Encode(req)
	if err != nil {
		return err
	}
	return w.WriteEncoded(b)
}

// WriteSpans appends one request holding the given resource spans.
func (w *Writer) WriteSpans(rss ...*tracepb.ResourceSpans) error {
	return w.Write(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
}

// WriteEncoded appends one request already in OTLP protobuf (as a locker sent it) and flushes it
// to the operating system (with Background, queues it for that).
func (w *Writer) WriteEncoded(b []byte) error {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	if w.queue == nil {
		return w.write(b)
	}
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return err
	}
	w.queue <- b
	return nil
}

func (w *Writer) write(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.f == nil {
		return fmt.Errorf("write trace file: closed")
	}
	binary.BigEndian.PutUint32(w.hdr[:], uint32(len(b)))
	if _, err := w.zw.Write(w.hdr[:]); err != nil {
		w.err = fmt.Errorf("write trace file: %w", err)
		return w.err
	}
	if _, err := w.zw.Write(b); err != nil {
		w.err = fmt.Errorf("write trace file: %w", err)
		return w.err
	}
	if err := w.zw.Flush(); err != nil {
		w.err = fmt.Errorf("write trace file: %w", err)
		return w.err
	}
	w.requests++
	return nil
}

// Requests returns how many requests were written (not those still queued).
func (w *Writer) Requests() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.requests
}

// Close writes the queued requests, ends the zstd frame, syncs and closes the file.
func (w *Writer) Close() error {
	w.qmu.Lock()
	if w.queue != nil {
		close(w.queue)
		<-w.done
		w.queue = nil
	}
	w.qmu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.err
	}
	zerr := w.zw.Close()
	serr := w.f.Sync()
	cerr := w.f.Close()
	w.f = nil
	switch {
	case w.err != nil:
		return w.err
	case zerr != nil:
		return fmt.Errorf("close trace file: %w", zerr)
	case serr != nil:
		return fmt.Errorf("sync trace file: %w", serr)
	case cerr != nil:
		return fmt.Errorf("close trace file: %w", cerr)
	}
	return nil
}
