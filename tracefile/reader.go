package tracefile

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/klauspost/compress/zstd"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Trace is a whole trace file, its span records merged.
type Trace struct {
	Spans     []*Span // sorted by start, then span id
	Requests  int     // requests (lines of a JSON file) read
	Truncated bool    // the file ended inside a request (a crash mid-write); that request was skipped
	Streamed  int     // spans Stream handed over as they completed, which Spans does not hold
}

// Merger merges span records as they come, for the live controller and for Read.
type Merger struct {
	byID map[key]*Span
	dec  *decoder
}

// NewMerger returns an empty Merger.
func NewMerger() *Merger { return &Merger{byID: map[key]*Span{}, dec: newDecoder()} }

// AddEncoded merges the records of one OTLP protobuf ExportTraceServiceRequest and returns the
// merged spans they touched, in record order.
func (m *Merger) AddEncoded(b []byte) ([]*Span, error) {
	var out []*Span
	if err := m.dec.each(b, func(k key, rec *Span) { out = append(out, m.add(k, rec)) }); err != nil {
		return nil, fmt.Errorf("decode spans: %w", err)
	}
	return out, nil
}

// Decoded is the span records of one request, decoded by a Decoder and not yet merged.
type Decoded struct {
	keys []key
	recs []*Span
}

// Len returns the number of records.
func (d *Decoded) Len() int { return len(d.recs) }

// Decoder decodes requests for a Merger on a goroutine of its own. Decoding is most of what
// merging a request costs; the live controller decodes on a goroutine beside its loop, which
// then only merges (AddDecoded). A Decoder is not safe for concurrent use.
type Decoder struct {
	d    *decoder
	room int // records of the last request: the next one's room
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder { return &Decoder{d: newDecoder()} }

// Decode decodes the records of one OTLP protobuf ExportTraceServiceRequest. The records are
// the Decoded's own: hand it to one Merger once.
func (d *Decoder) Decode(b []byte) (*Decoded, error) {
	out := &Decoded{keys: make([]key, 0, d.room), recs: make([]*Span, 0, d.room)}
	defer func() { d.room = len(out.recs) }()
	if err := d.d.each(b, func(k key, rec *Span) { out.keys, out.recs = append(out.keys, k), append(out.recs, rec) }); err != nil {
		return nil, fmt.Errorf("decode spans: %w", err)
	}
	return out, nil
}

// AddDecoded merges the records of a Decoded and returns the merged spans they touched, in
// record order, as AddEncoded does. The Decoded is used up: its records are the merger's now.
func (m *Merger) AddDecoded(d *Decoded) []*Span {
	out := make([]*Span, len(d.recs))
	for i, rec := range d.recs {
		out[i] = m.add(d.keys[i], rec)
	}
	d.keys, d.recs = nil, nil
	return out
}

// Add merges records the caller made itself (the controller's own spans) and returns the merged
// spans they touched.
func (m *Merger) Add(rss []*tracepb.ResourceSpans) []*Span {
	b, err := Encode(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
	if err != nil {
		return nil
	}
	out, _ := m.AddEncoded(b) // what proto just encoded decodes
	return out
}

// add merges one record that nobody else holds: its slices may become the merged span's.
func (m *Merger) add(k key, rec *Span) *Span {
	if s, ok := m.byID[k]; ok {
		s.merge(rec, true)
		return s
	}
	rec.SpanID = spanIDHex(k.span)
	// One record's events may come in any order (FuzzRead found a file whose did): a span's
	// events are in time order.
	if !slices.IsSortedFunc(rec.Events, byTime) {
		slices.SortStableFunc(rec.Events, byTime)
	}
	m.byID[k] = rec
	return rec
}

func byTime(x, y Event) int { return cmp.Compare(x.Time, y.Time) }

// Remove forgets a merged span: a later record of it starts a new one.
func (m *Merger) Remove(s *Span) {
	delete(m.byID, key{trace: [16]byte(traceIDOf(s.TraceID)), span: [8]byte(spanIDOf(s.SpanID))})
}

// Len returns the number of distinct spans merged so far.
func (m *Merger) Len() int { return len(m.byID) }

// Spans returns all merged spans, sorted by start, then span id.
func (m *Merger) Spans() []*Span {
	out := make([]*Span, 0, len(m.byID))
	for _, s := range m.byID {
		out = append(out, s)
	}
	return sortSpans(out)
}

// OpenSpans returns the merged spans that never ended, sorted as Spans sorts them: what the
// controller ends at the run's end, without sorting the run's every span for it.
func (m *Merger) OpenSpans() []*Span {
	var out []*Span
	for _, s := range m.byID {
		if s.Open() {
			out = append(out, s)
		}
	}
	return sortSpans(out)
}

func sortSpans(out []*Span) []*Span {
	slices.SortFunc(out, func(x, y *Span) int {
		if c := cmp.Compare(x.Start, y.Start); c != 0 {
			return c
		}
		return cmp.Compare(x.SpanID, y.SpanID)
	})
	return out
}

// Find returns the trace file of a run's output folder (FileName, else an older run's
// LegacyFileName), or path itself when it is a file.
func Find(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("open trace: %w", err)
	}
	if !st.IsDir() {
		return path, nil
	}
	for _, name := range []string{FileName, LegacyFileName} {
		p := filepath.Join(path, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("open trace: no %s in %s", FileName, path)
}

// Open reads a trace file; path may be the file or a run's output folder.
func Open(path string) (*Trace, error) { return readFile(path, Read) }

// readFile reads the trace file at path (or of a run's output folder) with read.
func readFile(path string, read func(io.Reader) (*Trace, error)) (*Trace, error) {
	p, err := Find(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer f.Close()
	t, err := read(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return t, nil
}

// Read reads a trace in any of the encodings Requests accepts and merges its records.
func Read(r io.Reader) (*Trace, error) {
	m := NewMerger()
	t := &Trace{}
	truncated, err := Requests(r, func(b []byte) error {
		t.Requests++
		_, err := m.AddEncoded(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	t.Truncated = truncated
	t.Spans = m.Spans()
	return t, nil
}

// maxRequest bounds one request of a binary trace: a length beyond it is a corrupt file, not a
// reason to allocate gigabytes.
const maxRequest = 256 << 20

// zstdMagic starts every zstd frame (RFC 8878).
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Requests calls fn with every request of a trace, as OTLP protobuf, in file order. It reads
// lockprobe's trace file (zstd of length-prefixed requests), the same records uncompressed (what
// the Collector's file exporter writes with format proto), and OTLP JSON lines (an older run's
// trace.jsonl, or what `lockprobe export -format otlp-json` and the Collector's file exporter
// write). A request cut short at the end of the file — a crash mid-write — is skipped and
// reported as truncated; anything else unreadable is an error naming the request. The slice fn
// gets is valid only during the call.
func Requests(r io.Reader, fn func([]byte) error) (truncated bool, err error) {
	br := bufio.NewReaderSize(r, 256<<10)
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		// One goroutine: decompressing ahead on a second one cost more CPU than it saved time on
		// this 2-core machine (10^6 events: 21 s against 17 s of CPU). Stream runs all of
		// Requests on a goroutine of its own, beside the decoders, which is where the time is.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return false, fmt.Errorf("read trace: %w", err)
		}
		defer zr.Close()
		return frames(bufio.NewReaderSize(zr, 256<<10), fn)
	case len(bytes.TrimLeft(head, " \t\r\n")) == 0 || bytes.TrimLeft(head, " \t\r\n")[0] == '{':
		return jsonLines(br, fn)
	default:
		return frames(br, fn)
	}
}

// frames reads length-prefixed requests: 4 bytes of big-endian length, then the request.
func frames(r *bufio.Reader, fn func([]byte) error) (bool, error) {
	var hdr [4]byte
	var buf []byte
	for n := 1; ; n++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return false, nil
			case errors.Is(err, io.ErrUnexpectedEOF):
				return true, nil
			}
			return false, fmt.Errorf("request %d: %w", n, err)
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if size > maxRequest {
			return false, fmt.Errorf("request %d: length %d is past the %d limit: not a trace file, or a corrupt one", n, size, maxRequest)
		}
		if cap(buf) < int(size) {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(r, buf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return true, nil
			}
			return false, fmt.Errorf("request %d: %w", n, err)
		}
		if err := fn(buf); err != nil {
			return false, fmt.Errorf("request %d: %w", n, err)
		}
	}
}

// jsonLines reads one OTLP JSON request per line. A last line without its newline that does not
// parse is a write cut short.
func jsonLines(r *bufio.Reader, fn func([]byte) error) (bool, error) {
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("line %d: %w", n, err)
		}
		last := err != nil
		if t := bytes.TrimSpace(line); len(t) > 0 {
			b, perr := ProtoOfJSON(t)
			if perr != nil {
				if last {
					return true, nil
				}
				return false, fmt.Errorf("line %d: %w", n, perr)
			}
			if err := fn(b); err != nil {
				return false, fmt.Errorf("line %d: %w", n, err)
			}
		}
		if last {
			return false, nil
		}
	}
}
