package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/lockprobe/lockprobe/tracefile"
)

// receiverMaxLine is the Collector's otlpjsonfile receiver's default max_log_size: its file
// consumer splits longer lines, and the halves no longer parse.
const receiverMaxLine = 1 << 20

// TestExportOTLPJSON runs a real contention, exports it with -format otlp-json and reads the
// lines with the otlpjsonfile receiver's own parser (it hands every line of the file to pdata's
// ptrace.JSONUnmarshaler): every span of the run arrives once, ended, with its attributes.
func TestExportOTLPJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs lockers")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	res := lockprobe(t, 60*time.Second, "run", "-file", filepath.Join(dir, "f"), "-procs", "3", "-out", out, "-timeout", "10s")
	if res.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	tr, err := tracefile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	jsonPath := filepath.Join(dir, "spans.jsonl")
	if r := lockprobe(t, 30*time.Second, "export", "-format", "otlp-json", "-o", jsonPath, out); r.code != 0 {
		t.Fatalf("export: exit %d\n%s", r.code, r.stderr)
	}
	stdout := lockprobe(t, 30*time.Second, "export", "-format", "otlp-json", filepath.Join(out, tracefile.FileName))
	file, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if stdout.code != 0 || stdout.stdout != string(file) {
		t.Errorf("export to stdout (exit %d) differs from export -o", stdout.code)
	}

	got := map[string]ptrace.Span{}
	var parser ptrace.JSONUnmarshaler
	sc := bufio.NewScanner(bytes.NewReader(file))
	sc.Buffer(make([]byte, 0, 1<<16), 64<<20)
	lines := 0
	for sc.Scan() {
		lines++
		if len(sc.Bytes()) > receiverMaxLine {
			t.Errorf("line %d is %d bytes: the receiver would split it", lines, len(sc.Bytes()))
		}
		td, err := parser.UnmarshalTraces(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d does not parse: %v", lines, err)
		}
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			if name, ok := rss.At(i).Resource().Attributes().Get("service.name"); !ok || name.Str() != "lockprobe" {
				t.Errorf("resource without service.name=lockprobe: %v", rss.At(i).Resource().Attributes().AsRaw())
			}
			sss := rss.At(i).ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					s := spans.At(k)
					id := s.SpanID().String()
					if _, dup := got[id]; dup {
						t.Errorf("span %s exported twice", id)
					}
					got[id] = s
				}
			}
		}
	}
	if len(got) != len(tr.Spans) || lines == 0 {
		t.Fatalf("%d spans in %d lines, want the trace's %d", len(got), lines, len(tr.Spans))
	}
	for _, s := range tr.Spans {
		e, ok := got[s.SpanID]
		switch {
		case !ok:
			t.Errorf("span %s %s missing", s.Name, s.SpanID)
		case e.Name() != s.Name || e.TraceID().String() != s.TraceID || int64(e.StartTimestamp()) != s.Start || e.EndTimestamp() == 0:
			t.Errorf("span %s: exported %s %s start %d end %d", s.SpanID, e.Name(), e.TraceID(), e.StartTimestamp(), e.EndTimestamp())
		case e.Attributes().Len() != len(s.Attrs) && !s.Open():
			t.Errorf("span %s %s: %d attributes exported, the trace has %d", s.Name, s.SpanID, e.Attributes().Len(), len(s.Attrs))
		}
	}

	bad := lockprobe(t, 10*time.Second, "export", "-format", "xml", out)
	if bad.code != 2 || !strings.Contains(bad.stderr, "-format") {
		t.Errorf("export -format xml: exit %d, stderr %q; want a usage error", bad.code, bad.stderr)
	}
}
