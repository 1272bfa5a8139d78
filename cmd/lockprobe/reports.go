package main

import (
	"fmt"
	"io"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
)

type reportOptions struct {
	outDir       string
	latency      time.Duration
	endReason    string
	killed       []string
	unresponsive []string
}

// writeReports writes the reports and prints the terminal summary.
// TODO(reports): replace with reports.WriteAll + reports.Terminal once the package lands.
func writeReports(res *analysis.Result, o reportOptions, stdout io.Writer) error {
	fmt.Fprintf(stdout, "verdict: %s (exit %d): %s\n", res.Verdict.Class, res.Verdict.Exit, res.Verdict.Summary)
	for _, s := range res.Summaries {
		fmt.Fprintf(stdout, "  %+v\n", s)
	}
	if o.latency > 0 {
		fmt.Fprintf(stdout, "deadlock detected %s after it formed\n", o.latency.Round(time.Millisecond))
	}
	fmt.Fprintf(stdout, "output: %s\n", o.outDir)
	return nil
}
