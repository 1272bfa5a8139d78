package reports

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/lockprobe/lockprobe/analysis"

	"github.com/lockprobe/lockprobe/semconv"
)

// The timeline is laid out here in Go and only printed by the template: coordinates are strings
// with one decimal, so a run of 10^4 attempts stays small.
const (
	tlLeft      = 200.0  // room for the row labels
	tlPlotW     = 1000.0 // the plot's width in user units; the page may zoom it
	tlRight     = 24.0
	tlTop       = 40.0 // room for the hang and detection labels
	tlAxisH     = 34.0
	tlMaxTitled = 6000  // bars + marks that carry a hover title; beyond it bars go without
	tlMaxMarks  = 30000 // bars + marks; beyond it, bars closer than a few pixels merge
)

// timeline is the SVG timeline, ready to print.
type timeline struct {
	W, H       string
	PlotX      string
	PlotW      string
	PlotBottom string
	AxisY      string
	Rows       []tlRow
	Ticks      []tlTick
	Lines      []tlLine
	Bands      []tlBar
	Caption    string
	Merged     bool
	Untitled   bool
}

type tlRow struct {
	Y     string // translate of the row group
	BgW   string
	H     string
	TextY string
	Label string
	Sub   string
	Hot   bool
	Bars  []tlBar
	Marks []tlBar
}

type tlBar struct {
	X, Y, W, H string
	Class      string
	Title      string
}

type tlTick struct {
	X     string
	Label string
}

type tlLine struct {
	X, LabelY string
	Class     string
	Label     string
	Anchor    string
}

// span is one interval to draw, before pixel merging.
type span struct {
	x0, x1 float64
	class  string
	n      int32 // the spans merged into this one; 0 stands for 1
	// ref names what the span's title tells, which is written only for a span still drawn on
	// its own (titled) at the end: a run of 10^6 attempts merges nearly all of them, and
	// writing every title first was most of the report's time.
	ref titleRef
}

// titleRef points at an attempt, one of its conflict answers, a hold, an observation or a
// locker's exit.
type titleRef struct {
	kind refKind
	i, j int32
}

type refKind uint8

const (
	refNone refKind = iota
	refAttempt
	refConflict
	refHold
	refObserved
	refExit
)

func f1(x float64) string { return strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64) }

// timeRange is the interval the timeline shows.
func timeRange(v *View) (t0, t1 int64) {
	t0, t1 = v.Run.StartNS, v.Run.EndNS
	for _, a := range v.Attempts {
		if t0 == 0 || (a.Begin > 0 && a.Begin < t0) {
			t0 = a.Begin
		}
		t1 = max(t1, a.End, a.Begin)
	}
	for _, h := range v.Holds {
		if t0 == 0 || (h.Begin > 0 && h.Begin < t0) {
			t0 = h.Begin
		}
		t1 = max(t1, h.End, h.Begin)
	}
	if t1 <= t0 {
		t1 = t0 + 1e9
	}
	return t0, t1
}

func buildTimeline(v *View) timeline {
	t0, t1 := timeRange(v)
	scale := tlPlotW / float64(t1-t0)
	x := func(t int64) float64 {
		if t < t0 {
			t = t0
		}
		if t > t1 {
			t = t1
		}
		return tlLeft + float64(t-t0)*scale
	}
	rowH := 24.0
	// One row per locker, then one per observer, whose F_GETLK answers are marks.
	type head struct {
		label, sub string
		hot        bool
	}
	heads := make([]head, 0, len(v.Lockers)+len(v.Observers))
	rowOf := map[int64]int{}
	for i, l := range v.Lockers {
		rowOf[l.ID] = i
		heads = append(heads, head{fmt.Sprintf("locker %d", l.ID), fmt.Sprintf("pid %d · %s", l.PID, l.Node), l.InVerdict})
	}
	obsRow := map[int64]int{}
	for _, o := range v.Observers {
		obsRow[o.ID] = len(heads)
		heads = append(heads, head{"observer", fmt.Sprintf("pid %d · %s", o.PID, o.Node), false})
	}
	if len(heads) > 40 {
		rowH = 14
	}
	waits := make([][]span, len(heads))
	holds := make([][]span, len(heads))
	marks := make([][]span, len(heads))
	title := func(ref titleRef) string {
		switch ref.kind {
		case refObserved:
			o := &v.Observations[ref.i]
			return fmt.Sprintf("F_GETLK for %s at %s: %s", o.QueryMode, rel(o.At, t0), v.names.ownerText(o.Owner))
		case refAttempt:
			a := v.Attempts[ref.i]
			end := a.End
			if end == 0 {
				end = t1
			}
			return fmt.Sprintf("%s %s %s on %s of %s (%s): %s after %s", a.Kind, a.Mode, a.Style, rangeText(a.Start, a.Len), fileText(analysis.Lock{File: a.File, Path: a.Path}), a.CmdText, a.Outcome, dur(end-a.Begin))
		case refConflict:
			c := &v.Attempts[ref.i].Conflicts[ref.j]
			return "F_GETLK at " + rel(c.At, t0) + ": " + v.names.ownerText(c.Owner)
		case refExit:
			l := &v.Lockers[ref.i]
			return "process ended at " + rel(l.ExitedNS, t0) + ": " + l.Exit
		case refHold:
			h := v.Holds[ref.i]
			end := h.End
			if end == 0 {
				end = t1
			}
			return fmt.Sprintf("holds %s %s %s of %s for %s, ended by %s", h.Kind, h.Mode, rangeText(h.Start, h.Len), fileText(analysis.Lock{File: h.File, Path: h.Path}), dur(end-h.Begin), h.How)
		}
		return ""
	}
	for i, o := range v.Observations {
		if r, ok := obsRow[o.Observer]; ok {
			ox := x(o.At)
			marks[r] = append(marks[r], span{x0: ox - 0.75, x1: ox + 0.75, class: "m-observed", ref: titleRef{kind: refObserved, i: int32(i)}})
		}
	}
	for i := range v.Attempts {
		a := v.Attempts[i]
		r, ok := rowOf[a.Locker]
		if !ok {
			continue
		}
		end := a.End
		if end == 0 {
			end = t1
		}
		ref := titleRef{kind: refAttempt, i: int32(i)}
		x0, x1 := x(a.Begin), x(end)
		switch a.Outcome {
		case semconv.OutcomeGranted:
			if x1-x0 >= 0.5 {
				waits[r] = append(waits[r], span{x0: x0, x1: x1, class: "w-granted", ref: ref})
			}
		case semconv.OutcomeBlocked, semconv.OutcomeWaiting:
			waits[r] = append(waits[r], span{x0: x0, x1: max(x1, x0+2), class: "w-blocked", ref: ref})
		default: // refused: would-block, deadlock, error
			if x1-x0 >= 0.5 {
				waits[r] = append(waits[r], span{x0: x0, x1: x1, class: "w-granted", ref: ref})
			}
			marks[r] = append(marks[r], span{x0: x1 - 1.5, x1: x1 + 1.5, class: outcomeClass(a.Outcome), ref: ref})
		}
		for j, c := range a.Conflicts {
			cx := x(max(c.At, a.Begin))
			marks[r] = append(marks[r], span{x0: cx - 0.75, x1: cx + 0.75, class: "m-conflict", ref: titleRef{kind: refConflict, i: int32(i), j: int32(j)}})
		}
	}
	for i := range v.Holds {
		h := v.Holds[i]
		r, ok := rowOf[h.Locker]
		if !ok {
			continue
		}
		end := h.End
		if end == 0 {
			end = t1
		}
		x0, x1 := x(h.Begin), x(end)
		holds[r] = append(holds[r], span{x0: x0, x1: max(x1, x0+1), class: holdClass(h.Mode), ref: titleRef{kind: refHold, i: int32(i)}})
	}
	for i, l := range v.Lockers {
		if r, ok := rowOf[l.ID]; ok && l.ExitedNS > 0 {
			ex := x(l.ExitedNS)
			marks[r] = append(marks[r], span{x0: ex - 1, x1: ex + 1, class: "m-exit", ref: titleRef{kind: refExit, i: int32(i)}})
		}
	}
	// Merge bars closer than gap pixels until the drawing fits the budget. Each row is sorted
	// once; merging with a wider gap what a narrower one merged gives what merging the bars
	// themselves with it does (a group of the narrower gap is never split by a wider one).
	gap := 0.5
	wm, hm, mm := sortRows(waits), sortRows(holds), sortRows(marks)
	merged := false
	for {
		mergeRows(wm, gap)
		mergeRows(hm, gap)
		mergeRows(mm, gap)
		if count(wm)+count(hm)+count(mm) <= tlMaxMarks || gap > 64 {
			break
		}
		gap *= 2
		merged = true
	}
	// Hover titles are most of the bytes: a big run keeps them on the marks only.
	untitled := count(wm)+count(hm)+count(mm) > tlMaxTitled
	titleOf := func(s span) string {
		if s.n > 1 {
			return fmt.Sprintf("%d merged: zoom in or see the tables", s.n)
		}
		return title(s.ref)
	}
	barTitle := func(s span) string {
		if untitled {
			return ""
		}
		return titleOf(s)
	}
	tl := timeline{PlotX: f1(tlLeft), PlotW: f1(tlPlotW), Rows: make([]tlRow, 0, len(heads)), Merged: merged, Untitled: untitled}
	plotH := rowH * float64(len(heads))
	bottom := tlTop + plotH
	tl.PlotBottom, tl.AxisY = f1(bottom), f1(bottom+4)
	tl.W, tl.H = f1(tlLeft+tlPlotW+tlRight), f1(bottom+tlAxisH)
	bh := (rowH - 6) / 2
	for i, hd := range heads {
		row := tlRow{Y: f1(tlTop + float64(i)*rowH), BgW: f1(tlLeft + tlPlotW), H: f1(rowH), TextY: f1(rowH/2 + 4),
			Label: hd.label, Sub: hd.sub, Hot: hd.hot, Bars: []tlBar{}, Marks: []tlBar{}}
		for _, s := range wm[i] {
			row.Bars = append(row.Bars, tlBar{X: f1(s.x0), Y: "2", W: f1(s.x1 - s.x0), H: f1(bh), Class: s.class, Title: barTitle(s)})
		}
		for _, s := range hm[i] {
			row.Bars = append(row.Bars, tlBar{X: f1(s.x0), Y: f1(4 + bh), W: f1(s.x1 - s.x0), H: f1(bh), Class: s.class, Title: barTitle(s)})
		}
		for _, s := range mm[i] {
			row.Marks = append(row.Marks, tlBar{X: f1(s.x0), Y: "0", W: f1(s.x1 - s.x0), H: f1(rowH), Class: s.class, Title: titleOf(s)})
		}
		tl.Rows = append(tl.Rows, row)
	}
	tl.Ticks = ticks(t0, t1, x)
	tl.Lines, tl.Bands = verdictLines(v, t0, x, bottom)
	tl.Caption = fmt.Sprintf("Time on the controller's clock; 0 is %s. Every locker's instants are stamped on that clock within ±%s (the largest clock uncertainty measured during the run).",
		wallTime(t0), dur(v.Clock.UncertaintyNS))
	return tl
}

// verdictLines marks when the verdict's condition began and when it was detected, with the clock
// uncertainty as a band around the first.
func verdictLines(v *View, t0 int64, x func(int64) float64, bottom float64) ([]tlLine, []tlBar) {
	lines, bands := []tlLine{}, []tlBar{}
	var f *FindingView
	if i := v.Verdict.Finding; i >= 0 && i < len(v.Findings) {
		f = &v.Findings[i]
	}
	if f == nil || f.FormedNS == 0 {
		return lines, bands
	}
	unc := max(f.ClockUncertaintyNS, v.Clock.UncertaintyNS)
	bx0, bx1 := x(f.FormedNS-unc), x(f.FormedNS+unc)
	bands = append(bands, tlBar{X: f1(bx0), Y: f1(tlTop), W: f1(bx1 - bx0), H: f1(bottom - tlTop), Class: "unc",
		Title: "clock uncertainty ±" + dur(unc)})
	fx := x(f.FormedNS)
	lines = append(lines, tlLine{X: f1(fx), LabelY: "14", Class: "formed", Label: "hang began " + rel(f.FormedNS, t0), Anchor: "end"})
	det := f.DetectedNS
	label := "detected " + rel(det, t0)
	if v.Verdict.DetectionLatencyNS > 0 {
		det = f.FormedNS + v.Verdict.DetectionLatencyNS
		label = fmt.Sprintf("detected %s (%s later)", rel(det, t0), dur(v.Verdict.DetectionLatencyNS))
	}
	if det > 0 && det != f.FormedNS {
		lines = append(lines, tlLine{X: f1(x(det)), LabelY: "30", Class: "detected", Label: label, Anchor: "end"})
	}
	for i := range lines {
		if xv, _ := strconv.ParseFloat(lines[i].X, 64); xv < tlLeft+tlPlotW/2 {
			lines[i].Anchor = "start"
		}
	}
	return lines, bands
}

func ticks(t0, t1 int64, x func(int64) float64) []tlTick {
	span := float64(t1 - t0)
	step := niceStep(span / 8)
	out := []tlTick{}
	for t := 0.0; t <= span+1; t += step {
		label := "0"
		if t > 0 {
			label = "+" + dur(int64(t))
		}
		out = append(out, tlTick{X: f1(x(t0 + int64(t))), Label: label})
	}
	return out
}

// niceStep rounds up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// sortRows puts each row's spans in the order merging takes them: by class, then by start,
// spans of one class and start in the order they were drawn.
func sortRows(rows [][]span) [][]span {
	for _, r := range rows {
		slices.SortStableFunc(r, func(a, b span) int {
			if c := strings.Compare(a.class, b.class); c != 0 {
				return c
			}
			return cmp.Compare(a.x0, b.x0)
		})
	}
	return rows
}

// mergeRows merges, in place, the spans of a row's class that touch within gap pixels.
func mergeRows(rows [][]span, gap float64) {
	for i, r := range rows {
		out := r[:0]
		for _, s := range r {
			if k := len(out) - 1; k >= 0 && out[k].class == s.class && s.x0 <= out[k].x1+gap {
				out[k].x1 = max(out[k].x1, s.x1)
				out[k].n = max(out[k].n, 1) + max(s.n, 1)
				continue
			}
			out = append(out, s)
		}
		rows[i] = out
	}
}

// outcomeClass is a refused attempt's mark's class.
func outcomeClass(o semconv.Outcome) string {
	switch o {
	case semconv.OutcomeWouldBlock:
		return "m-would-block"
	case semconv.OutcomeDeadlock:
		return "m-deadlock"
	case semconv.OutcomeError:
		return "m-error"
	}
	return "m-" + o.String()
}

// holdClass is a hold bar's class, by mode: made once, not per hold.
func holdClass(m semconv.Mode) string {
	switch m {
	case semconv.ModeRead:
		return "h-read"
	case semconv.ModeWrite:
		return "h-write"
	}
	return "h-" + m.String()
}

func count(rows [][]span) int {
	n := 0
	for _, r := range rows {
		n += len(r)
	}
	return n
}
