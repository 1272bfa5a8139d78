package tracefile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// FileName is the trace file's name inside a run's output folder.
const FileName = "trace.jsonl"

// Trace is a whole trace file, its span records merged.
type Trace struct {
	Spans     []*Span // sorted by start, then span id
	Lines     int     // lines read
	Truncated bool    // the last line was unfinished (a crash mid-write); it was skipped
}

// Merger merges span records as they come, for the live controller and for Read.
type Merger struct {
	byID map[string]*Span
}

// NewMerger returns an empty Merger.
func NewMerger() *Merger { return &Merger{byID: map[string]*Span{}} }

// Add merges the records of rss and returns the merged spans they touched.
func (m *Merger) Add(rss []*tracepb.ResourceSpans) []*Span {
	recs := Records(rss)
	out := make([]*Span, 0, len(recs))
	for _, rec := range recs {
		key := rec.TraceID + rec.SpanID
		if s, ok := m.byID[key]; ok {
			s.Merge(rec)
			out = append(out, s)
			continue
		}
		m.byID[key] = rec
		out = append(out, rec)
	}
	return out
}

// Spans returns all merged spans, sorted by start, then span id.
func (m *Merger) Spans() []*Span {
	out := make([]*Span, 0, len(m.byID))
	for _, s := range m.byID {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Start != out[j].Start {
			return out[i].Start < out[j].Start
		}
		return out[i].SpanID < out[j].SpanID
	})
	return out
}

// Open reads a trace file; path may be the file or a run's output folder.
func Open(path string) (*Trace, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer f.Close()
	t, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return t, nil
}

// Read reads a trace. A last line without its newline that does not parse is taken as a write
// cut short by a crash: it is skipped and Truncated is set. Any other bad line is an error.
func Read(r io.Reader) (*Trace, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	m := NewMerger()
	t := &Trace{}
	n := 0 // line number in the file, blank lines included, for errors
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			n++
			complete := line[len(line)-1] == '\n'
			line = bytes.TrimSpace(line)
			if len(line) > 0 {
				t.Lines++
				req, perr := UnmarshalLine(line)
				switch {
				case perr != nil && !complete:
					t.Truncated = true
				case perr != nil:
					return nil, fmt.Errorf("line %d: %w", n, perr)
				default:
					m.Add(req.ResourceSpans)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
	}
	t.Spans = m.Spans()
	return t, nil
}
