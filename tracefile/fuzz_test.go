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
