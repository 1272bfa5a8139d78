package tracefile

import (
	"bytes"
	"errors"
	"reflect"
	"sort"
	"testing"
)

func fuzzSeeds(f *testing.F) [][]byte {
	data, _ := traceFile(f, attemptRecords()...)
	pbRec, err := Encode(reqOf(f, fullRecord()))
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{
		data, data[:len(data)/2], traceText(f, attemptRecords()...), jsonLine(f, reqOf(f, fullRecord())),
		append([]byte{0, 0, 0, byte(len(pbRec))}, pbRec...),
		[]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId" : "` + testTrace + `","spanId":"` + testSpan + `"}]}]}]}`),
		[]byte(`{}`), []byte(``), zstdMagic, {0, 0, 0, 1, 0},
	}
}

// FuzzRead: no panic on any file; what Read returns keeps its invariants.
func FuzzRead(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Read(bytes.NewReader(data))
		sameStream(t, data, tr, err)
		if err != nil {
			return
		}
		if !sort.SliceIsSorted(tr.Spans, func(i, j int) bool {
			a, b := tr.Spans[i], tr.Spans[j]
			return a.Start < b.Start || (a.Start == b.Start && a.SpanID < b.SpanID)
		}) {
			t.Fatal("spans not sorted by start, then span id")
		}
		for _, s := range tr.Spans {
			if s.Records < 1 {
				t.Fatalf("span %s with %d records", s.SpanID, s.Records)
			}
			for i := 1; i < len(s.Events); i++ {
				if s.Events[i].Time < s.Events[i-1].Time {
					t.Fatalf("span %s: events out of order", s.SpanID)
				}
			}
		}
	})
}

// sameStream: Stream of the same bytes refuses what Read refused, and else hands over and keeps
// the spans Read returns (unless a record came late, which sends the caller to Read).
func sameStream(t *testing.T, data []byte, whole *Trace, werr error) {
	t.Helper()
	type id struct{ trace, span string }
	got := map[id]*Span{}
	tr, err := Stream(bytes.NewReader(data), StreamOptions{Release: lockSpan, Done: func(s *Span) { got[id{s.TraceID, s.SpanID}] = s.clone() }})
	switch {
	case errors.Is(err, ErrLate):
		return
	case werr != nil:
		if err == nil {
			t.Fatalf("Read refused the file (%v), Stream did not", werr)
		}
		return
	case err != nil:
		t.Fatalf("Stream: %v; Read took the file", err)
	}
	for _, s := range tr.Spans {
		got[id{s.TraceID, s.SpanID}] = s
	}
	if len(got) != len(whole.Spans) || tr.Requests != whole.Requests || tr.Truncated != whole.Truncated {
		t.Fatalf("Stream: %d spans of %d requests (truncated %v), Read %d of %d (%v)", len(got), tr.Requests, tr.Truncated,
			len(whole.Spans), whole.Requests, whole.Truncated)
	}
	for _, s := range whole.Spans {
		if g := got[id{s.TraceID, s.SpanID}]; !reflect.DeepEqual(g, s) {
			t.Fatalf("Stream's span\n%+v\nRead's\n%+v", g, s)
		}
	}
}

// FuzzDecodeMatchesPdata holds the protowire decoder to the Collector's pdata: whatever bytes a
// request holds, both accept them or both refuse them, and what they accept becomes the same
// span records.
func FuzzDecodeMatchesPdata(f *testing.F) {
	for _, l := range append(attemptRecords(), []rec{fullRecord()}) {
		b, err := Encode(reqOf(f, l...))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := pdataRecords(b)
		var got []*Span
		gerr := newDecoder().each(b, func(k key, s *Span) {
			s.SpanID = spanIDHex(k.span)
			got = append(got, s)
		})
		if errors.Is(gerr, errGroup) && werr == nil {
			return // pdata skips groups by rules of its own; OTLP has none
		}
		if (gerr != nil) != (werr != nil) {
			t.Fatalf("decoder error %v, pdata error %v", gerr, werr)
		}
		if gerr != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%d records, pdata %d", len(got), len(want))
		}
		for i := range got {
			g, w := *got[i], *want[i]
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("record %d:\n%+v\npdata:\n%+v", i, g, w)
			}
		}
	})
}
