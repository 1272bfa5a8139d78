package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `# load-before: 1.00 2.00 3.00
goos: linux
BenchmarkFireSpread/procs=10-2   	       1	3379189757 ns/op	        28.78 late-median-µs	      1525 spread-median-µs	      5.2 ratio-to-floor
BenchmarkGetlk-2   	       1	 234958884 ns/op	      1223 ns/call-cpu
PASS
`
	metrics, notes, raw, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		bench, unit string
		want        float64
	}{
		{"BenchmarkFireSpread/procs=10", "spread-median-µs", 1525},
		{"BenchmarkFireSpread/procs=10", "late-median-µs", 28.78},
		{"BenchmarkFireSpread/procs=10", "ratio-to-floor", 5.2},
		{"BenchmarkGetlk", "ns/call-cpu", 1223},
	} {
		if got := metrics[c.bench][c.unit]; got != c.want {
			t.Errorf("%s %s = %v, want %v", c.bench, c.unit, got, c.want)
		}
	}
	if notes["load-before"] != "1.00 2.00 3.00" || len(raw) != 2 {
		t.Errorf("notes %v, raw %d lines", notes, len(raw))
	}
	var buf bytes.Buffer
	render(&buf, metrics, notes, raw, false, []byte("## Findings\n\ntext\n"))
	if !strings.Contains(buf.String(), "## Findings\n\ntext\n\n## Raw output") {
		t.Errorf("findings not kept before the raw output:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "| 1525 spread-median-µs | not run |  |  |") || !strings.Contains(buf.String(), "| 5.20 ratio-to-floor |  | ≤ 1.3 | **no** |") {
		t.Errorf("table row missing:\n%s", buf.String())
	}
}
