package tracefile

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func lockSpan(name string) bool { return name == "lock.acquire" || name == "lock.hold" }

// TestStreamHandsOverFinalSpans: Stream hands every released span over at its final record,
// merged as Read merges it (an attempt of three records, holds of one, several spans in one
// request so that the decoder's reused room is overwritten between them), and returns the
// others — an open hold, a process span with a record after its final one — as Read does.
func TestStreamHandsOverFinalSpans(t *testing.T) {
	recs := attemptRecords()
	hold := func(id string, start uint64, pid int64) rec {
		return rec{span: id, parent: testParent, name: "lock.hold", start: start, end: start + 50,
			attrs:  []*commonpb.KeyValue{strKV("lock.mode", "read"), intKV("lock.start", int64(start))},
			events: []*tracepb.Span_Event{event("lock.conflict", start+10, intKV("proc.lock.pid", pid))}}
	}
	proc := rec{span: "dddddddddddddddd", name: "lockprobe.locker", start: t0, end: t0 + 2000, attrs: []*commonpb.KeyValue{intKV("locker.id", 1)}}
	exit := rec{span: "dddddddddddddddd", name: "lockprobe.locker", start: t0, events: []*tracepb.Span_Event{event("locker.exit", t0+2000)}}
	lines := [][]rec{
		recs[0], recs[1],
		{hold("cccccccccccccccc", t0+10, 3), {span: "bbbbbbbbbbbbbbbb", name: "lock.hold", start: t0 + 50}, hold("eeeeeeeeeeeeeeee", t0+20, 4)},
		recs[2],
		{proc, hold("ffffffffffffffff", t0+30, 5)},
		{exit},
	}
	for _, enc := range encodings {
		t.Run(enc.name, func(t *testing.T) {
			data := enc.of(t, lines...)
			whole, err := Read(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			var got []*Span
			tr, err := Stream(bytes.NewReader(data), StreamOptions{Release: lockSpan, Done: func(s *Span) {
				if !lockSpan(s.Name) || s.Open() {
					t.Errorf("handed over %s %s (end %d)", s.Name, s.SpanID, s.End)
				}
				got = append(got, s.clone()) // valid only during the call
			}})
			if err != nil {
				t.Fatal(err)
			}
			byID := map[string]*Span{}
			for _, s := range whole.Spans {
				byID[s.SpanID] = s
			}
			if len(got) != 4 || tr.Streamed != 4 {
				t.Fatalf("handed over %d spans (Streamed %d), want 4", len(got), tr.Streamed)
			}
			for _, s := range got {
				if !reflect.DeepEqual(s, byID[s.SpanID]) {
					t.Errorf("streamed span\n%+v\nwant\n%+v", *s, *byID[s.SpanID])
				}
			}
			var rest []string
			for _, s := range tr.Spans {
				rest = append(rest, s.SpanID)
				if !reflect.DeepEqual(s, byID[s.SpanID]) {
					t.Errorf("kept span\n%+v\nwant\n%+v", *s, *byID[s.SpanID])
				}
			}
			if want := []string{"dddddddddddddddd", "bbbbbbbbbbbbbbbb"}; !reflect.DeepEqual(rest, want) {
				t.Errorf("kept %v, want %v", rest, want)
			}
			if tr.Requests != whole.Requests {
				t.Errorf("Requests = %d, want %d", tr.Requests, whole.Requests)
			}
		})
	}
}

// TestStreamLateRecord: a record of a span after its final one (a watcher's event that raced
// the end, as older controllers wrote) is ErrLate, whether it is the span's only other record
// or comes after a span handed over at its first record.
func TestStreamLateRecord(t *testing.T) {
	recs := attemptRecords()
	for name, lines := range map[string][][]rec{
		"after merged final": recs,
		"after first final":  {recs[2], recs[3]},
	} {
		t.Run(name, func(t *testing.T) {
			data, _ := traceFile(t, lines...)
			_, err := Stream(bytes.NewReader(data), StreamOptions{Release: lockSpan, Done: func(*Span) {}})
			if !errors.Is(err, ErrLate) {
				t.Fatalf("err = %v, want ErrLate", err)
			}
		})
	}
}

// TestNewValuesEveryTime: a place whose values are new in every record (a hold's acquire id)
// is decoded without the tables after a few records; every record still reads its own values,
// and a place that repeats again is read right.
func TestNewValuesEveryTime(t *testing.T) {
	var lines [][]rec
	for i := range 300 {
		v := strconv.Itoa(i)
		if i >= 200 {
			v = "again" // new values stop: the place repeats
		}
		lines = append(lines, []rec{{span: fmt.Sprintf("%016x", i+1), name: "lock.hold", start: uint64(t0 + i), end: uint64(t0 + i + 1),
			attrs: []*commonpb.KeyValue{strKV("lock.acquire_id", "id-"+v), intKV("n", int64(1000+i)), strKV("lock.mode", "write")}}})
	}
	data, _ := traceFile(t, lines...)
	for name, read := range map[string]func() ([]*Span, error){
		"Read": func() ([]*Span, error) {
			tr, err := Read(bytes.NewReader(data))
			if err != nil {
				return nil, err
			}
			return tr.Spans, nil
		},
		"Stream": func() ([]*Span, error) {
			var got []*Span
			_, err := Stream(bytes.NewReader(data), StreamOptions{Release: lockSpan, Done: func(s *Span) { got = append(got, s.clone()) }})
			return got, err
		},
	} {
		spans, err := read()
		if err != nil {
			t.Fatal(err)
		}
		if len(spans) != 300 {
			t.Fatalf("%s: %d spans", name, len(spans))
		}
		for i, s := range spans {
			v := strconv.Itoa(i)
			if i >= 200 {
				v = "again"
			}
			if got := s.Attrs.Str("lock.acquire_id"); got != "id-"+v {
				t.Errorf("%s: span %d: acquire id %q, want %q", name, i, got, "id-"+v)
			}
			if got, _ := s.Attrs.Int("n"); got != int64(1000+i) {
				t.Errorf("%s: span %d: n = %d", name, i, got)
			}
			if got := s.Attrs.Str("lock.mode"); got != "write" {
				t.Errorf("%s: span %d: mode %q", name, i, got)
			}
		}
	}
}

// TestRepeatedKeys: a key given twice in one list (which OTLP forbids, but a file may hold)
// keeps its last value and appears once, whichever way each of the two was decoded (from a
// position's memory, from the table of whole KeyValues, or walked), and also for keys beyond
// the first 64 of a trace (which have no bit of their own).
func TestRepeatedKeys(t *testing.T) {
	var many []*commonpb.KeyValue
	for i := range 70 {
		many = append(many, intKV(fmt.Sprintf("k%02d", i), int64(i)))
	}
	var lines [][]rec
	for i := range 40 {
		v := strconv.Itoa(i)
		attrs := []*commonpb.KeyValue{strKV("lock.mode", "read"), strKV("id", "id-"+v), strKV("lock.mode", "write")}
		switch i % 4 {
		case 1: // the repeat is new every time
			attrs = append(attrs, strKV("lock.mode", "m-"+v))
		case 2: // the first is new every time, the repeat is known
			attrs = []*commonpb.KeyValue{strKV("lock.mode", "m-"+v), strKV("lock.mode", "write")}
		case 3: // past the 64 keys with bits
			attrs = append(append([]*commonpb.KeyValue{}, many...), intKV("k68", -1), intKV("k02", -2))
		}
		ev := &tracepb.Span_Event{TimeUnixNano: uint64(t0 + i), Name: "e",
			Attributes: []*commonpb.KeyValue{strKV("a", "x"), strKV("a", "y-"+v), strKV("b", "z"), strKV("a", "y")}}
		lines = append(lines, []rec{{span: fmt.Sprintf("%016x", i+1), name: "lock.hold", start: uint64(t0 + i), end: uint64(t0 + i + 1),
			attrs: attrs, events: []*tracepb.Span_Event{ev}}})
	}
	data, _ := traceFile(t, lines...)
	tr, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var streamed []*Span
	if _, err := Stream(bytes.NewReader(data), StreamOptions{Release: lockSpan, Done: func(s *Span) { streamed = append(streamed, s.clone()) }}); err != nil {
		t.Fatal(err)
	}
	for name, spans := range map[string][]*Span{"Read": tr.Spans, "Stream": streamed} {
		if len(spans) != 40 {
			t.Fatalf("%s: %d spans", name, len(spans))
		}
		for i, s := range spans {
			v := strconv.Itoa(i)
			count := map[string]int{}
			for _, a := range s.Attrs {
				count[a.Key]++
			}
			for k, n := range count {
				if n != 1 {
					t.Errorf("%s: span %d: key %q %d times", name, i, k, n)
				}
			}
			want := map[int]string{0: "write", 1: "m-" + v, 2: "write"}[i%4]
			if i%4 == 3 {
				if len(s.Attrs) != 70 {
					t.Errorf("%s: span %d: %d attributes, want 70", name, i, len(s.Attrs))
				}
				for k, w := range map[string]int64{"k68": -1, "k02": -2, "k03": 3, "k69": 69} {
					if got, _ := s.Attrs.Int(k); got != w {
						t.Errorf("%s: span %d: %s = %d, want %d", name, i, k, got, w)
					}
				}
			} else if got := s.Attrs.Str("lock.mode"); got != want {
				t.Errorf("%s: span %d: lock.mode %q, want %q", name, i, got, want)
			}
			if len(s.Events) != 1 || len(s.Events[0].Attrs) != 2 || s.Events[0].Attrs.Str("a") != "y" || s.Events[0].Attrs.Str("b") != "z" {
				t.Errorf("%s: span %d: event attributes %v, want a=y b=z", name, i, s.Events)
			}
		}
	}
}

// TestHasDuplicate: a value given twice is found wherever it lies, among few values and among
// many (dealt into buckets), also when many values share their top bits.
func TestHasDuplicate(t *testing.T) {
	for _, n := range []int{0, 1, 2, 100, 1 << 14, 1<<17 + 3} {
		for _, spread := range []bool{true, false} {
			hs := make([]uint64, n)
			for i := range hs {
				hs[i] = uint64(i+1) * 0x9e3779b97f4a7c15
				if !spread {
					hs[i] = uint64(i + 1) // all in the first bucket
				}
			}
			if hasDuplicate(slices.Clone(hs)) {
				t.Fatalf("n=%d spread=%v: a duplicate among distinct values", n, spread)
			}
			if n < 2 {
				continue
			}
			for _, at := range [][2]int{{0, n - 1}, {n / 2, n/2 - 1}, {n - 2, 1}} {
				c := slices.Clone(hs)
				c[at[0]] = c[at[1]]
				if !hasDuplicate(c) {
					t.Errorf("n=%d spread=%v: hs[%d] = hs[%d] not found", n, spread, at[0], at[1])
				}
			}
		}
	}
}

func BenchmarkHasDuplicate(b *testing.B) {
	hs := make([]uint64, 1_000_000)
	for i := range hs {
		hs[i] = keyHash(key{span: [8]byte{byte(i), byte(i >> 8), byte(i >> 16)}})
	}
	b.Run("buckets", func(b *testing.B) {
		for b.Loop() {
			hasDuplicate(slices.Clone(hs))
		}
	})
	b.Run("clone", func(b *testing.B) {
		for b.Loop() {
			_ = slices.Clone(hs)
		}
	})
	b.Run("sort", func(b *testing.B) {
		for b.Loop() {
			c := slices.Clone(hs)
			slices.Sort(c)
			sortedDuplicate(c)
		}
	})
}
