package analysis_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/lockprobe/lockprobe/analysis/fixture"
	"github.com/lockprobe/lockprobe/tracefile"
)

// These tests hold tracefile.Read's hand-written decoder to the protojson path it replaces: they
// live here because the fixtures that make realistic lines live here.

// slowRead merges lines the way Read did before its fast path: protojson, then Records.
func slowRead(lines [][]byte) (*tracefile.Trace, error) {
	m := tracefile.NewMerger()
	for _, l := range lines {
		req, err := tracefile.UnmarshalLine(l)
		if err != nil {
			return nil, err
		}
		m.Add(req.ResourceSpans)
	}
	return &tracefile.Trace{Spans: m.Spans(), Lines: len(lines)}, nil
}

// fixtureLines returns the trace lines of every golden fixture.
func fixtureLines(t testing.TB) [][]byte {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	var lines [][]byte
	for _, path := range files {
		ar, err := txtar.ParseFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fx, err := fixture.Parse(section(ar, "trace"))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range fx.Requests {
			l, err := tracefile.MarshalLine(r)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
		}
	}
	return lines
}

// oddLines are lines the fast path must decline or decode exactly as protojson does.
var oddLines = []string{
	`{}`,
	`{"resourceSpans":[]}`,
	`{"resourceSpans":[{}]}`,
	`{"resourceSpans":[{"resource":{}}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0a0b","spanId":"01","name":"x","kind":"SPAN_KIND_INTERNAL","flags":257,"status":{}}]}],"resource":{"attributes":[{"key":"a","value":{"intValue":"-5"}}]}}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"scope":{"name":"s","version":"1"},"spans":[{"traceId":"0A0B","spanId":"01"}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0a0","spanId":"01"}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","attributes":[{"key":"d","value":{"doubleValue":1.5e3}},{"key":"b","value":{"boolValue":true}},{"key":"n","value":{"intValue":-7}},{"key":"e","value":{}},{"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":"300"}]}}},{"key":"k","value":{"kvlistValue":{"values":[{"key":"z","value":{"boolValue":false}}]}}},{"key":"ea","value":{"arrayValue":{}}},{"key":"ek","value":{"kvlistValue":{}}}]}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","attributes":[{"key":"a","value":{"stringValue":"x"}},{"key":"a","value":{"stringValue":"y"}}]}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","attributes":[{"key":"a","value":{"stringValue":"x","intValue":"1"}}]}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","name":"a","name":"b"}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","name":null}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","name":"\u00e9\"q"}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","name":"héllo"}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","startTimeUnixNano":"0012"}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","startTimeUnixNano":12,"endTimeUnixNano":"18446744073709551615"}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","startTimeUnixNano":"18446744073709551616"}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","kind":"SPAN_KIND_BOGUS"}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","kind":3,"status":{"code":"STATUS_CODE_ERROR","message":"m"}}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","links":[]}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","events":[{"timeUnixNano":"5","name":"e","attributes":[]},{"timeUnixNano":"4","name":"f"}]}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","attributes":[{"key":"b","value":{"bytesValue":"AAE="}}]}]}]}]}`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01"}]}]}]} x`,
	`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01",}]}]}]}`,
	`{"resource_spans":[]}`,
	` { "resourceSpans" : [ { "scopeSpans" : [ { "spans" : [ { "spanId" : "01" , "attributes" : [ { "key" : "i" , "value" : { "intValue" : 3 } } ] } ] } ] } ] } `,
}

func checkSame(t *testing.T, lines [][]byte) {
	t.Helper()
	var file bytes.Buffer
	for _, l := range lines {
		file.Write(l)
		file.WriteByte('\n')
	}
	fast, ferr := tracefile.Read(&file)
	slow, serr := slowRead(lines)
	if (ferr != nil) != (serr != nil) {
		t.Fatalf("fast error %v, protojson error %v", ferr, serr)
	}
	if ferr != nil {
		return
	}
	if !reflect.DeepEqual(fast.Spans, slow.Spans) {
		for i := range fast.Spans {
			if i < len(slow.Spans) && !reflect.DeepEqual(fast.Spans[i], slow.Spans[i]) {
				t.Fatalf("span %d differs:\nfast %+v\nslow %+v", i, *fast.Spans[i], *slow.Spans[i])
			}
		}
		t.Fatalf("spans differ: %d fast, %d protojson", len(fast.Spans), len(slow.Spans))
	}
}

// TestReadMatchesProtojson reads the fixtures' traces and odd lines both ways.
func TestReadMatchesProtojson(t *testing.T) {
	checkSame(t, fixtureLines(t))
	for _, l := range oddLines {
		t.Run("", func(t *testing.T) { checkSame(t, [][]byte{[]byte(l)}) })
	}
	if path := os.Getenv("LOCKPROBE_TRACE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, bytes.Split(bytes.TrimSpace(b), []byte("\n")))
	}
}

// FuzzReadMatchesProtojson: whatever a line holds, the fast decoder and protojson agree on
// whether it parses and on the spans it makes.
func FuzzReadMatchesProtojson(f *testing.F) {
	for _, l := range fixtureLines(f) {
		f.Add(l)
	}
	for _, l := range oddLines {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || bytes.ContainsAny(line, "\n\r") {
			return
		}
		checkSame(t, [][]byte{line})
	})
}
