package tracefile

import (
	"bytes"
	"sort"
	"testing"

	pb "google.golang.org/protobuf/proto"
)

func fuzzSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{
		mustLine(f, reqOf(f, fullRecord())),
		[]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId" : "` + testTrace + `","spanId":"` + testSpan + `"}]}]}]}`),
		[]byte(`{"key":"spanId","value":{"stringValue":"traceId"}}`), // once hung the id rewrite
		[]byte(`{"spanId"`), []byte(`{"spanId":"`), []byte(`"parentSpanId""spanId":""`), []byte(`{}`), []byte(``),
	}
	for _, l := range attemptRecords() {
		seeds = append(seeds, mustLine(f, reqOf(f, l...)))
	}
	return seeds
}

// FuzzUnmarshalLine: no panic, no hang; what parses writes back and parses to the same request.
func FuzzUnmarshalLine(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := UnmarshalLine(line)
		if err != nil {
			return
		}
		out, err := MarshalLine(req)
		if err != nil {
			t.Fatalf("a parsed line does not marshal: %v", err)
		}
		again, err := UnmarshalLine(out)
		if err != nil {
			t.Fatalf("a marshalled line does not parse: %v\n%s", err, out)
		}
		if !pb.Equal(req, again) {
			t.Fatalf("second trip changed the request:\n%v\n%v", req, again)
		}
		Records(req.ResourceSpans) // must not panic on whatever parsed
	})
}

// FuzzRead: no panic on any file; what Read returns keeps its invariants.
func FuzzRead(f *testing.F) {
	seeds := fuzzSeeds(f)
	f.Add(bytes.Join(seeds, []byte("\n")))
	f.Add(traceText(f, attemptRecords()...))
	f.Add(append(traceText(f, attemptRecords()...), seeds[0][:40]...))
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
