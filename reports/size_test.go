package reports

import (
	"bytes"
	"io"
	"testing"
)

// maxReportBytes is the budget of a report of 100 lockers and 10^4 attempts: "a few MB".
const maxReportBytes = 3 << 20

func TestLargeRunSize(t *testing.T) {
	if testing.Short() {
		t.Skip("analyses 10^4 attempts")
	}
	res := resultOf(t, bigTrace(100, 100))
	if len(res.Attempts) < 10_000 || len(res.Lockers) != 100 {
		t.Fatalf("the big run has %d attempts of %d lockers", len(res.Attempts), len(res.Lockers))
	}
	var h, j bytes.Buffer
	if err := HTML(&h, res, Options{Version: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := JSON(&j, res, Options{Version: "test"}); err != nil {
		t.Fatal(err)
	}
	writeOut(t, "large.html", h.Bytes())
	t.Logf("100 lockers, %d attempts, %d holds, %d findings: report.html %d bytes, verdict.json %d bytes",
		len(res.Attempts), len(res.Holds), len(res.Findings), h.Len(), j.Len())
	if h.Len() > maxReportBytes {
		t.Errorf("report.html is %d bytes, over the %d budget", h.Len(), maxReportBytes)
	}
	p := checkHTML(t, h.Bytes())
	if p.svgs < 3 {
		t.Errorf("%d svg elements in the large report", p.svgs)
	}
}

func BenchmarkHTMLLarge(b *testing.B) {
	res := resultOf(b, bigTrace(100, 100))
	b.ReportAllocs()
	var n int64
	for b.Loop() {
		cw := &countWriter{}
		if err := HTML(cw, res, Options{}); err != nil {
			b.Fatal(err)
		}
		n = cw.n
	}
	b.ReportMetric(float64(n), "bytes/report")
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
