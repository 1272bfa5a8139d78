package tracefile

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// traceText joins lines of records, each line ending in a newline.
func traceText(t testing.TB, lines ...[]rec) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(mustLine(t, reqOf(t, l...)))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

const t0 = 1_700_000_000_000_000_000

// The life of one attempt as the controller writes it: partial at start, a partial per
// conflict event, the final record, and a late partial (a watcher event that raced the end).
func attemptRecords() [][]rec {
	const id = "aaaaaaaaaaaaaaaa"
	return [][]rec{
		{{span: id, parent: testParent, name: "lock.acquire", start: t0 + 100,
			attrs: []*commonpb.KeyValue{strKV("lock.outcome", "waiting"), strKV("lock.mode", "write")}}},
		{{span: id, name: "lock.acquire", start: t0 + 100,
			events: []*tracepb.Span_Event{event("lock.conflict", t0+300, intKV("proc.lock.pid", 7))}}},
		{{span: id, parent: testParent, name: "lock.acquire", start: t0 + 100, end: t0 + 900,
			attrs:  []*commonpb.KeyValue{strKV("lock.outcome", "granted"), strKV("lock.mode", "write")},
			events: []*tracepb.Span_Event{event("lock.call", t0+150), event("lock.conflict", t0+300, intKV("proc.lock.pid", 7))}}},
		{{span: id, name: "lock.acquire", start: t0 + 100,
			attrs:  []*commonpb.KeyValue{strKV("lock.outcome", "waiting"), strKV("lock.late", "yes")},
			events: []*tracepb.Span_Event{event("lock.conflict", t0+300), event("lock.conflict", t0+950)}}},
	}
}

func TestReadMergesRecords(t *testing.T) {
	lines := attemptRecords()
	// A second span that starts earlier and never ends: it sorts first and stays open.
	lines = append(lines, []rec{{span: "bbbbbbbbbbbbbbbb", name: "lock.hold", start: t0 + 50}})
	tr, err := Read(bytes.NewReader(traceText(t, lines...)))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Lines != 5 || tr.Truncated {
		t.Fatalf("Lines=%d Truncated=%v, want 5, false", tr.Lines, tr.Truncated)
	}
	if len(tr.Spans) != 2 {
		t.Fatalf("%d spans, want 2", len(tr.Spans))
	}
	if hold := tr.Spans[0]; hold.SpanID != "bbbbbbbbbbbbbbbb" || !hold.Open() || hold.Records != 1 {
		t.Errorf("first span %+v, want the open hold", hold)
	}
	s := tr.Spans[1]
	if s.TraceID != testTrace || s.SpanID != "aaaaaaaaaaaaaaaa" || s.ParentID != testParent || s.Name != "lock.acquire" {
		t.Errorf("identity: %+v", s)
	}
	if s.Start != t0+100 || s.End != t0+900 || s.Open() {
		t.Errorf("start %d end %d, want %d %d", s.Start, s.End, t0+100, t0+900)
	}
	if s.Records != 4 {
		t.Errorf("Records = %d, want 4", s.Records)
	}
	if got := s.Attrs.Str("lock.outcome"); got != "granted" {
		t.Errorf("lock.outcome = %q: the late partial record beat the final one", got)
	}
	if got := s.Attrs.Str("lock.late"); got != "yes" {
		t.Errorf("lock.late = %q: a key only the late partial record has should be kept", got)
	}
	var events []string
	for _, e := range s.Events {
		events = append(events, e.Name+"@"+strconv.FormatInt(e.Time-t0, 10))
	}
	want := []string{"lock.call@150", "lock.conflict@300", "lock.conflict@950"}
	if !reflect.DeepEqual(events, want) {
		t.Errorf("events %v, want %v (united, in time order, no duplicates)", events, want)
	}
	if pid, ok := s.Events[1].Attrs.Int("proc.lock.pid"); !ok || pid != 7 {
		t.Errorf("conflict event lost its attributes: %+v", s.Events[1])
	}
	if s.Resource.Str("service.name") != "lockprobe" || s.Resource.IntOr("locker.id", -1) != 1 {
		t.Errorf("resource %+v", s.Resource)
	}
}

// The merge must not depend on which record arrives first: a final record first, then the
// partial one that was written at the start (two writers racing), gives the same span.
func TestMergeOrderFinalFirst(t *testing.T) {
	recs := attemptRecords()
	tr, err := Read(bytes.NewReader(traceText(t, recs[2], recs[0])))
	if err != nil {
		t.Fatal(err)
	}
	s := tr.Spans[0]
	if s.End != t0+900 || s.Attrs.Str("lock.outcome") != "granted" || s.ParentID != testParent {
		t.Errorf("final record lost to an earlier-written partial: %+v", s)
	}
}

func TestReadTruncatedLastLine(t *testing.T) {
	full := traceText(t, attemptRecords()...)
	last := mustLine(t, reqOf(t, rec{span: "cccccccccccccccc", name: "lock.hold", start: t0}))
	for _, cut := range []int{1, len(last) / 2, len(last) - 1} {
		data := append(bytes.Clone(full), last[:cut]...)
		tr, err := Read(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if !tr.Truncated {
			t.Errorf("cut at %d: Truncated = false", cut)
		}
		if len(tr.Spans) != 1 || tr.Spans[0].Records != 4 || tr.Spans[0].End != t0+900 {
			t.Errorf("cut at %d: earlier spans not kept: %+v", cut, tr.Spans)
		}
	}
	// A complete last line without its newline is not a truncation.
	tr, err := Read(bytes.NewReader(append(bytes.Clone(full), last...)))
	if err != nil || tr.Truncated || len(tr.Spans) != 2 {
		t.Errorf("complete last line without newline: err %v, truncated %v, %d spans", err, tr != nil && tr.Truncated, len(tr.Spans))
	}
}

func TestReadBadLine(t *testing.T) {
	good := mustLine(t, reqOf(t, rec{span: testSpan, name: "lock.hold", start: t0}))
	tests := []struct {
		name string
		data string
		want string
	}{
		{"garbage in the middle", string(good) + "\n" + "{not json\n" + string(good) + "\n", "line 2:"},
		{"cut line followed by more", string(good) + "\n" + string(good[:20]) + "\n" + string(good) + "\n", "line 2:"},
		{"bad last line with its newline", string(good) + "\n" + "{not json\n", "line 2:"},
		{"after blank lines", string(good) + "\n\n\n" + "oops\n", "line 4:"},
		{"bad id", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"zz"}]}]}]}` + "\n", "line 1:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Read(strings.NewReader(tc.data))
			if err == nil {
				t.Fatalf("Read accepted it: %+v", tr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

func TestReadEmptyAndBlank(t *testing.T) {
	for _, data := range []string{"", "\n", "\n\n  \n", "\r\n"} {
		tr, err := Read(strings.NewReader(data))
		if err != nil || tr.Truncated || len(tr.Spans) != 0 || tr.Lines != 0 {
			t.Errorf("Read(%q) = %+v, %v", data, tr, err)
		}
	}
}

func TestReadCRLF(t *testing.T) {
	data := bytes.ReplaceAll(traceText(t, attemptRecords()...), []byte("\n"), []byte("\r\n"))
	tr, err := Read(bytes.NewReader(data))
	if err != nil || len(tr.Spans) != 1 || tr.Spans[0].Records != 4 {
		t.Fatalf("CRLF trace: %+v, %v", tr, err)
	}
}

func TestOpenFolderAndFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, traceText(t, attemptRecords()...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, path} {
		tr, err := Open(p)
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		if len(tr.Spans) != 1 || tr.Lines != 4 {
			t.Errorf("Open(%s): %d spans, %d lines", p, len(tr.Spans), tr.Lines)
		}
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), FileName) {
		t.Errorf("Open of a folder without %s: err = %v", FileName, err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Open of a bad file: err = %v, want the path and the line", err)
	}
}

func TestMergerAddReturnsTouched(t *testing.T) {
	m := NewMerger()
	recs := attemptRecords()
	first := m.Add(reqOf(t, recs[0]...).ResourceSpans)
	second := m.Add(reqOf(t, recs[2]...).ResourceSpans)
	if len(first) != 1 || len(second) != 1 || first[0] != second[0] {
		t.Fatalf("Add did not return the same merged span: %v %v", first, second)
	}
	if s := second[0]; s.End != t0+900 || s.Records != 2 {
		t.Errorf("merged span %+v", s)
	}
	if got := m.Spans(); len(got) != 1 {
		t.Errorf("Spans() = %d spans", len(got))
	}
}

func TestAttrsAccessors(t *testing.T) {
	a := Attrs{"s": "x", "i": int64(3), "f": float64(4.9), "arr": []any{"a", int64(1), "b"}, "b": true}
	if a.Str("s") != "x" || a.Str("i") != "" || a.Str("none") != "" {
		t.Error("Str")
	}
	if v, ok := a.Int("i"); !ok || v != 3 {
		t.Error("Int of an int64")
	}
	if v, ok := a.Int("f"); !ok || v != 4 {
		t.Error("Int of a float64")
	}
	if _, ok := a.Int("s"); ok {
		t.Error("Int of a string")
	}
	if a.IntOr("none", -1) != -1 || a.IntOr("i", -1) != 3 {
		t.Error("IntOr")
	}
	if got := a.Strings("arr"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("Strings = %v", got)
	}
	if got := a.Strings("none"); got == nil || len(got) != 0 {
		t.Errorf("Strings of a missing key = %#v, want empty", got)
	}
}
