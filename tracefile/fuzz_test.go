package tracefile

import (
	"bytes"
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
