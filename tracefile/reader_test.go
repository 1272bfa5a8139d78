package tracefile

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

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
	for _, enc := range encodings {
		t.Run(enc.name, func(t *testing.T) {
			tr, err := Read(bytes.NewReader(enc.of(t, lines...)))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Requests != 5 || tr.Truncated {
				t.Fatalf("Requests=%d Truncated=%v, want 5, false", tr.Requests, tr.Truncated)
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
			if s.Scope == nil || s.Scope.Name != "lockprobe" {
				t.Errorf("scope %+v", s.Scope)
			}
			if &s.Resource[0] != &tr.Spans[0].Resource[0] {
				t.Error("equal resources are not shared")
			}
		})
	}
}

// The merge must not depend on which record arrives first: a final record first, then the
// partial one that was written at the start (two writers racing), gives the same span.
func TestMergeOrderFinalFirst(t *testing.T) {
	recs := attemptRecords()
	data, _ := traceFile(t, recs[2], recs[0])
	tr, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	s := tr.Spans[0]
	if s.End != t0+900 || s.Attrs.Str("lock.outcome") != "granted" || s.ParentID != testParent {
		t.Errorf("final record lost to an earlier-written partial: %+v", s)
	}
}

// TestMergeRule holds Span.Merge to its rule for the fields OTLP export cares about: name,
// kind, status and links.
func TestMergeRule(t *testing.T) {
	final := func() *Span {
		return &Span{SpanID: "s", Name: "final", Kind: KindInternal, Start: 10, End: 20, StatusCode: StatusError, StatusMsg: "boom",
			Attrs: Attrs{{"a", "final"}}, Links: []Link{{TraceID: "t", SpanID: "l1"}}, Records: 1}
	}
	partial := func() *Span {
		return &Span{SpanID: "s", Name: "partial", Kind: 3, Start: 5, Attrs: Attrs{{"a", "partial"}, {"b", "only-partial"}},
			Links: []Link{{TraceID: "t", SpanID: "l1"}, {TraceID: "t", SpanID: "l2"}}, Records: 1}
	}
	tests := []struct {
		name       string
		first, rec *Span
		want       Span
	}{
		{"partial after final", final(), partial(), Span{Name: "final", Kind: KindInternal, Start: 5, End: 20, StatusCode: StatusError,
			StatusMsg: "boom", Attrs: Attrs{{"a", "final"}, {"b", "only-partial"}}, Links: []Link{{TraceID: "t", SpanID: "l1"}, {TraceID: "t", SpanID: "l2"}}}},
		{"final after partial", partial(), final(), Span{Name: "final", Kind: KindInternal, Start: 5, End: 20, StatusCode: StatusError,
			StatusMsg: "boom", Attrs: Attrs{{"a", "final"}, {"b", "only-partial"}}, Links: []Link{{TraceID: "t", SpanID: "l1"}, {TraceID: "t", SpanID: "l2"}}}},
		{"partial fills an empty name", &Span{SpanID: "s", End: 20, Records: 1}, partial(), Span{Name: "partial", Kind: 3, Start: 5, End: 20,
			Attrs: Attrs{{"a", "partial"}, {"b", "only-partial"}}, Links: []Link{{TraceID: "t", SpanID: "l1"}, {TraceID: "t", SpanID: "l2"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.first
			s.Merge(tc.rec)
			got := Span{Name: s.Name, Kind: s.Kind, Start: s.Start, End: s.End, StatusCode: s.StatusCode, StatusMsg: s.StatusMsg, Attrs: s.Attrs, Links: s.Links}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("merged\n%+v\nwant\n%+v", got, tc.want)
			}
			if s.Records != 2 {
				t.Errorf("Records = %d", s.Records)
			}
		})
	}
}

func TestReadTruncated(t *testing.T) {
	last := []rec{{span: "cccccccccccccccc", name: "lock.hold", start: t0}}
	t.Run("pb.zst", func(t *testing.T) {
		data, sizes := traceFile(t, append(attemptRecords(), last)...)
		before, after := sizes[len(sizes)-2], sizes[len(sizes)-1]
		for _, cut := range []int64{before + 1, (before + after) / 2, after - 1} {
			tr, err := Read(bytes.NewReader(data[:cut]))
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
		// Everything flushed but the zstd frame never closed (the controller was killed).
		tr, err := Read(bytes.NewReader(data[:after]))
		if err != nil || len(tr.Spans) != 2 {
			t.Errorf("unclosed frame: err %v, %+v", err, tr)
		}
	})
	t.Run("jsonl", func(t *testing.T) {
		full := traceText(t, attemptRecords()...)
		line := jsonLine(t, reqOf(t, last...))
		for _, cut := range []int{1, len(line) / 2, len(line) - 1} {
			tr, err := Read(bytes.NewReader(append(bytes.Clone(full), line[:cut]...)))
			if err != nil {
				t.Fatalf("cut at %d: %v", cut, err)
			}
			if !tr.Truncated || len(tr.Spans) != 1 {
				t.Errorf("cut at %d: truncated %v, %d spans", cut, tr.Truncated, len(tr.Spans))
			}
		}
		// A complete last line without its newline is not a truncation.
		tr, err := Read(bytes.NewReader(append(bytes.Clone(full), line...)))
		if err != nil || tr.Truncated || len(tr.Spans) != 2 {
			t.Errorf("complete last line without newline: err %v, %+v", err, tr)
		}
	})
}

func TestReadBad(t *testing.T) {
	good := jsonLine(t, reqOf(t, rec{span: testSpan, name: "lock.hold", start: t0}))
	frame := func(b []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...) }
	pbGood, err := Encode(reqOf(t, rec{span: testSpan, name: "lock.hold", start: t0}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
		want string
	}{
		{"garbage in the middle", string(good) + "\n" + "{not json\n" + string(good) + "\n", "line 2:"},
		{"cut line followed by more", string(good) + "\n" + string(good[:20]) + "\n" + string(good) + "\n", "line 2:"},
		{"bad last line with its newline", string(good) + "\n" + "{not json\n", "line 2:"},
		{"after blank lines", string(good) + "\n\n\n" + "{oops\n", "line 4:"},
		{"bad id", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"zz"}]}]}]}` + "\n", "line 1:"},
		{"frame that is not protobuf", string(frame(pbGood)) + string(frame([]byte{0xff, 0xff, 0xff})), "request 2:"},
		{"frame length past the limit", string(frame(pbGood)) + "\x7f\xff\xff\xff", "request 2: length"},
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

// The Collector's file exporter with format proto writes the same frames uncompressed.
func TestReadUncompressedFrames(t *testing.T) {
	var data []byte
	for _, l := range attemptRecords() {
		b, err := Encode(reqOf(t, l...))
		if err != nil {
			t.Fatal(err)
		}
		data = append(binary.BigEndian.AppendUint32(data, uint32(len(b))), b...)
	}
	tr, err := Read(bytes.NewReader(data))
	if err != nil || len(tr.Spans) != 1 || tr.Spans[0].Records != 4 || tr.Truncated {
		t.Fatalf("uncompressed frames: %+v, %v", tr, err)
	}
}

func TestReadEmptyAndBlank(t *testing.T) {
	for _, data := range []string{"", "\n", "\n\n  \n", "\r\n"} {
		tr, err := Read(strings.NewReader(data))
		if err != nil || tr.Truncated || len(tr.Spans) != 0 || tr.Requests != 0 {
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
	data, _ := traceFile(t, attemptRecords()...)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	legacy := t.TempDir()
	if err := os.WriteFile(filepath.Join(legacy, LegacyFileName), traceText(t, attemptRecords()...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, path, legacy} {
		tr, err := Open(p)
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		if len(tr.Spans) != 1 || tr.Requests != 4 {
			t.Errorf("Open(%s): %d spans, %d requests", p, len(tr.Spans), tr.Requests)
		}
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), FileName) {
		t.Errorf("Open of a folder without %s: err = %v", FileName, err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{x\n"), 0o644); err != nil {
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
	if open := m.OpenSpans(); len(open) != 1 || open[0] != first[0] {
		t.Errorf("OpenSpans() after a partial record = %v, want the span", open)
	}
	second := m.Add(reqOf(t, recs[2]...).ResourceSpans)
	if open := m.OpenSpans(); len(open) != 0 {
		t.Errorf("OpenSpans() after the final record = %v, want none", open)
	}
	if len(first) != 1 || len(second) != 1 || first[0] != second[0] {
		t.Fatalf("Add did not return the same merged span: %v %v", first, second)
	}
	if s := second[0]; s.End != t0+900 || s.Records != 2 {
		t.Errorf("merged span %+v", s)
	}
	if got := m.Spans(); len(got) != 1 || m.Len() != 1 {
		t.Errorf("Spans() = %d spans, Len() = %d", len(got), m.Len())
	}
	if _, err := m.AddEncoded([]byte{0xff, 0xff}); err == nil {
		t.Error("AddEncoded accepted garbage")
	}
}

func TestAttrsAccessors(t *testing.T) {
	a := Attrs{{"s", "x"}, {"i", int64(3)}, {"f", float64(4.9)}, {"arr", []any{"a", int64(1), "b"}}, {"b", true}}
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
	a.Set("s", "y")
	a.Set("new", int64(1))
	if a.Str("s") != "y" || a.IntOr("new", 0) != 1 || len(a) != 6 {
		t.Errorf("Set: %v", a)
	}
}

// Records decoded by a Decoder on another goroutine merge as AddEncoded merges the same
// requests: the same touched spans, in the same order, and the same merged result.
func TestAddDecodedIsAddEncoded(t *testing.T) {
	var reqs [][]byte
	for _, l := range append(attemptRecords(), []rec{fullRecord()}) {
		b, err := Encode(reqOf(t, l...))
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, b)
	}
	enc, dec := NewMerger(), NewMerger()
	decoded := make(chan *Decoded)
	go func() {
		defer close(decoded)
		d := NewDecoder()
		for _, b := range reqs {
			x, err := d.Decode(b)
			if err != nil {
				t.Error(err)
				return
			}
			decoded <- x
		}
	}()
	i := 0
	for x := range decoded {
		n := x.Len()
		a, err := enc.AddEncoded(reqs[i])
		if err != nil {
			t.Fatal(err)
		}
		b := dec.AddDecoded(x)
		if len(a) != n || len(b) != n {
			t.Fatalf("request %d: %d records decoded, AddEncoded touched %d, AddDecoded %d", i, n, len(a), len(b))
		}
		for j := range a {
			if !reflect.DeepEqual(a[j], b[j]) {
				t.Errorf("request %d record %d:\n%+v\nwant\n%+v", i, j, b[j], a[j])
			}
		}
		i++
	}
	if !reflect.DeepEqual(enc.Spans(), dec.Spans()) {
		t.Error("the merged spans differ")
	}
	if _, err := NewDecoder().Decode([]byte{0xff, 0xff}); err == nil {
		t.Error("Decode accepted garbage")
	}
}
