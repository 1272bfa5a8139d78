package reports

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/lockprobe/lockprobe/analysis"
)

// maxTerminalRows caps the per-locker table on the terminal; the report has every locker.
const maxTerminalRows = 12

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[1;33m"
	ansiGreen  = "\x1b[1;32m"
	ansiDim    = "\x1b[2m"
)

// Terminal writes a few lines: the verdict first, a per-locker table, the fire spread, hand-off
// latency and lost messages, then where the report is.
func Terminal(w io.Writer, res *analysis.Result, opts Options) error {
	v := NewView(res, opts)
	bw := bufio.NewWriter(w)
	paint := func(code, s string) string {
		if !opts.Color {
			return s
		}
		return code + s + ansiReset
	}
	color := map[string]string{"ok": ansiGreen, "warn": ansiYellow, "bad": ansiRed}[severityClass(v.Verdict.Exit)]
	fmt.Fprintf(bw, "%s (exit %d)\n", paint(color, "verdict: "+strings.ToUpper(v.Verdict.Title)), v.Verdict.Exit)
	fmt.Fprintf(bw, "  %s\n", clean(v.Verdict.Summary))
	var facts []string
	if v.Verdict.DetectionLatencyNS > 0 {
		facts = append(facts, "detected "+dur(v.Verdict.DetectionLatencyNS)+" after it formed")
	}
	if v.Run.EndReason != "" {
		facts = append(facts, "run ended: "+clean(v.Run.EndReason))
	}
	facts = append(facts, fmt.Sprintf("%d lockers, %d attempts in %s", len(v.Lockers), v.Statistics.Attempts, dur(v.Run.DurationNS)))
	fmt.Fprintf(bw, "  %s\n", strings.Join(facts, " · "))
	if len(v.Findings) > 1 {
		fmt.Fprintf(bw, "  %s\n", paint(ansiDim, fmt.Sprintf("%d findings in all; see the report", len(v.Findings))))
	}
	if len(v.Lockers) > 0 {
		fmt.Fprintln(bw)
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
		programs := v.Lockers[0].Command != ""
		if programs {
			fmt.Fprintln(tw, "pid\tnode\tattempts\toutcome\twait time\thold time\tre-checks\t command")
		} else {
			fmt.Fprintln(tw, "locker\tnode\tpid\tattempts\toutcome\twait time\thold time\t")
		}
		rows := terminalRows(v.Lockers)
		for _, l := range rows {
			mark := ""
			if l.InVerdict {
				mark = " *"
			}
			if programs {
				// A program's processes have no locker ids a user knows: pid and command line.
				fmt.Fprintf(tw, "%d%s\t%s\t%d\t%s\t%s\t%s\t%d\t %s\n", l.PID, mark, clean(l.Node), l.Attempts,
					orDash(l.LastOutcome), dur(l.WaitNS), dur(l.HoldNS), l.Rechecks, clean(l.Command))
				continue
			}
			fmt.Fprintf(tw, "%d%s\t%s\t%d\t%d\t%s\t%s\t%s\t\n", l.ID, mark, clean(l.Node), l.PID, l.Attempts,
				orDash(l.LastOutcome), dur(l.WaitNS), dur(l.HoldNS))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write terminal summary: %w", err)
		}
		if more := len(v.Lockers) - len(rows); more > 0 {
			fmt.Fprintf(bw, "  … and %d more lockers in the report\n", more)
		}
		if len(v.Verdict.Lockers) > 0 {
			fmt.Fprintf(bw, "  %s\n", paint(ansiDim, "* in the verdict"))
		}
	}
	fmt.Fprintln(bw)
	st := v.Statistics
	if st.Fire.Instants > 0 {
		fmt.Fprintf(bw, "fire spread: median %s, p99 %s, max %s over %d shared instants\n", dur(st.Fire.MedianNS), dur(st.Fire.P99NS), dur(st.Fire.MaxNS), st.Fire.Instants)
	}
	if st.HandOff.Count > 0 {
		fmt.Fprintf(bw, "hand-off latency: p50 %s, p99 %s, max %s over %d hand-offs\n", dur(st.HandOff.P50), dur(st.HandOff.P99), dur(st.HandOff.Max), st.HandOff.Count)
	}
	lost := fmt.Sprintf("lost messages: %d", v.Run.MessagesLost)
	if v.Run.MessagesLost > 0 {
		lost = paint(ansiYellow, lost)
	}
	if v.Run.Truncated {
		lost += " · trace truncated"
	}
	fmt.Fprintln(bw, lost)
	writeNodes(bw, v)
	if len(v.Run.NoGoodbye) > 0 {
		fmt.Fprintf(bw, "%s %s\n", paint(ansiYellow, "ended without goodbye (its last records may be missing):"), clean(someOf(v.Run.NoGoodbye)))
	}
	if len(v.Run.Killed) > 0 {
		fmt.Fprintf(bw, "killed: %s\n", clean(someOf(v.Run.Killed)))
	}
	if len(v.Run.Unresponsive) > 0 {
		fmt.Fprintf(bw, "unresponsive: %s\n", clean(someOf(v.Run.Unresponsive)))
	}
	if opts.OutDir != "" {
		fmt.Fprintf(bw, "report: %s (%s, %s beside it)\n", paint(ansiBold, clean(filepath.Join(opts.OutDir, HTMLFile))), VerdictFile, DOTFile)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write terminal summary: %w", err)
	}
	return nil
}

// writeNodes says, for a run across the nodes of a cluster, each node's clock against the
// controller's (the bound widens every comparison with the node's instants) and the intervals
// nothing arrived from it.
func writeNodes(w io.Writer, v *View) {
	if v.Run.Launcher == "" && !slicesAny(v.Hosts, func(h HostView) bool { return len(h.Silences) > 0 }) {
		return
	}
	var clocks []string
	for _, h := range v.Hosts {
		if h.ClockUncertaintyNS > 0 {
			clocks = append(clocks, fmt.Sprintf("%s %s ± %s", clean(h.Node), dur(h.ClockOffsetNS), dur(h.ClockUncertaintyNS)))
		}
	}
	if len(clocks) > 0 {
		fmt.Fprintf(w, "node clocks (offset ± bound): %s\n", strings.Join(clocks, ", "))
	}
	for _, h := range v.Hosts {
		for _, s := range h.Silences {
			back := "then heard again"
			if !s.Healed {
				back = "never heard again"
			}
			fmt.Fprintf(w, "node %s silent from %s to %s after the start (%s), %s\n", clean(h.Node), dur(s.FromNS), dur(s.ToNS), dur(s.ToNS-s.FromNS), back)
		}
	}
}

func slicesAny[T any](s []T, f func(T) bool) bool {
	for _, x := range s {
		if f(x) {
			return true
		}
	}
	return false
}

// someOf joins the first maxTerminalRows names of a list: a run of a thousand lockers that all
// ended without their goodbye wrote a line of 35 KB, which buries the verdict above it; the
// report and verdict.json keep the whole list.
func someOf(names []string) string {
	if len(names) <= maxTerminalRows {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s … and %d more in the report", strings.Join(names[:maxTerminalRows], ", "), len(names)-maxTerminalRows)
}

// terminalRows picks the lockers of the verdict first, then the others, up to the cap, in id order.
func terminalRows(ls []LockerView) []LockerView {
	if len(ls) <= maxTerminalRows {
		return ls
	}
	out := make([]LockerView, 0, maxTerminalRows)
	for _, l := range ls {
		if l.InVerdict && len(out) < maxTerminalRows {
			out = append(out, l)
		}
	}
	for _, l := range ls {
		if !l.InVerdict && len(out) < maxTerminalRows {
			out = append(out, l)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// clean keeps text from the run (file names, node names) from steering the terminal: control
// characters become '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return '?'
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return clean(s)
}

// LiveStatus is what the live status line shows while a run goes on.
type LiveStatus struct {
	Elapsed       time.Duration
	Lockers       int
	Holding       int
	Waiting       int
	LongestWait   time.Duration
	LongestWaiter int64 // locker id; ignored when LongestWait is 0
}

// StatusLine renders the live status as one line without a newline; the controller prints it
// after a carriage return while stderr is a terminal.
func StatusLine(s LiveStatus) string {
	line := fmt.Sprintf("%s · %d lockers: %d holding, %d waiting", dur(int64(s.Elapsed.Round(100*time.Millisecond))), s.Lockers, s.Holding, s.Waiting)
	if s.LongestWait > 0 {
		line += fmt.Sprintf(" · longest wait %s (locker %d)", dur(int64(s.LongestWait)), s.LongestWaiter)
	}
	return line
}
