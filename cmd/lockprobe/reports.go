//go:build !lockeronly

package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/control"
	"github.com/lockprobe/lockprobe/reports"
)

type reportOptions struct {
	outDir       string
	latency      time.Duration
	endReason    string
	killed       []string
	unresponsive []string
}

// writeReports writes report.html, verdict.json and waitfor.dot, then prints the summary.
func writeReports(res *analysis.Result, o reportOptions, stdout io.Writer) error {
	opts := reports.Options{OutDir: o.outDir, Version: version, DetectionLatency: o.latency, EndReason: o.endReason,
		Killed: o.killed, Unresponsive: o.unresponsive, Color: isTerminal(stdout)}
	if err := reports.WriteAll(res, opts); err != nil {
		return fmt.Errorf("write reports into %s: %w", o.outDir, err)
	}
	if abs, err := filepath.Abs(o.outDir); err == nil {
		opts.OutDir = abs
	}
	return reports.Terminal(stdout, res, opts)
}

// statusLine prints the live status on a terminal, over itself; a zero status clears it.
func statusLine(w io.Writer) func(control.Status) {
	return func(s control.Status) {
		if s == (control.Status{}) {
			fmt.Fprint(w, "\r\033[K")
			return
		}
		fmt.Fprint(w, "\r\033[K"+reports.StatusLine(reports.LiveStatus(s)))
	}
}
