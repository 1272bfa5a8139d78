package reports

import (
	"bufio"
	"embed"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/lockprobe/lockprobe/analysis"
)

//go:embed templates
var templateFS embed.FS

// maxFindingsShown caps the findings printed in the HTML; verdict.json has them all.
const maxFindingsShown = 50

// assets are the parsed templates and the inline style and script, read once.
type assets struct {
	tmpl *template.Template
	css  template.CSS
	js   template.JS
}

var loadAssets = sync.OnceValues(func() (*assets, error) {
	css, err := templateFS.ReadFile("templates/style.css")
	if err != nil {
		return nil, fmt.Errorf("read style: %w", err)
	}
	js, err := templateFS.ReadFile("templates/script.js")
	if err != nil {
		return nil, fmt.Errorf("read script: %w", err)
	}
	t, err := template.New("report.html.tmpl").Funcs(baseFuncs(0)).ParseFS(templateFS, "templates/*.html.tmpl")
	if err != nil {
		return nil, fmt.Errorf("parse report templates: %w", err)
	}
	// Both files are ours, shipped inside the binary; nothing from a run goes into them.
	return &assets{tmpl: t, css: template.CSS(css), js: template.JS(js)}, nil
})

// baseFuncs are the template functions; rel needs the run's start, so each render binds its own.
func baseFuncs(start int64) template.FuncMap {
	return template.FuncMap{
		"dur":  dur,
		"rel":  func(t int64) string { return rel(t, start) },
		"sev":  severityClass,
		"join": strings.Join,
		"pct":  func(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" },
		"ints": func(v []int64) string {
			parts := make([]string, len(v))
			for i, x := range v {
				parts[i] = itoa(x)
			}
			return strings.Join(parts, ", ")
		},
	}
}

// page is what the HTML template sees: the shared view model plus what only a page needs.
type page struct {
	*View
	Sev           string
	Headline      string
	HeadDetail    string
	Started       string
	FSText        string
	Finding       *FindingView
	Integrity     []string
	ShownFindings []FindingView
	MoreFindings  int
	WaitModes     []modeRow
	OutcomeRows   []countRow
	Timeline      timeline
	GraphSVG      graphSVG
	Hist          histSVG
	Ticket        Ticket
	CSS           template.CSS
	JS            template.JS
}

type modeRow struct {
	Mode string
	P    Percentiles
}

type countRow struct {
	Name string
	N    int
}

// HTML writes the self-contained report page.
func HTML(w io.Writer, res *analysis.Result, opts Options) error {
	a, err := loadAssets()
	if err != nil {
		return err
	}
	v := NewView(res, opts)
	p := newPage(v)
	p.CSS, p.JS = a.css, a.js
	t, err := a.tmpl.Clone()
	if err != nil {
		return fmt.Errorf("clone report template: %w", err)
	}
	t.Funcs(baseFuncs(v.Run.StartNS))
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := t.Execute(bw, p); err != nil {
		return fmt.Errorf("render report.html: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write report.html: %w", err)
	}
	return nil
}

func newPage(v *View) *page {
	p := &page{View: v, Sev: severityClass(v.Verdict.Exit), Started: wallTime(v.Run.StartNS), Integrity: []string{}}
	p.Headline, p.HeadDetail = headline(v.Verdict.Summary)
	if i := v.Verdict.Finding; i >= 0 && i < len(v.Findings) {
		p.Finding = &v.Findings[i]
	}
	// The verdict's own finding is printed at the top; this list holds the others.
	p.ShownFindings = make([]FindingView, 0, len(v.Findings))
	for i, f := range v.Findings {
		if i != v.Verdict.Finding {
			p.ShownFindings = append(p.ShownFindings, f)
		}
	}
	if len(p.ShownFindings) > maxFindingsShown {
		p.ShownFindings, p.MoreFindings = p.ShownFindings[:maxFindingsShown], len(p.ShownFindings)-maxFindingsShown
	}
	if v.Run.MessagesLost > 0 {
		p.Integrity = append(p.Integrity, fmt.Sprintf("%d messages from the lockers were lost: the trace has gaps, and the verdict rests on what arrived.", v.Run.MessagesLost))
	}
	if len(v.Run.NoGoodbye) > 0 {
		p.Integrity = append(p.Integrity, "Ended without their goodbye, so that what they had not sent yet is missing: "+strings.Join(v.Run.NoGoodbye, ", ")+".")
	}
	if v.Run.Truncated {
		p.Integrity = append(p.Integrity, "The trace file was truncated (its last line was unfinished, as after a crash); that line was skipped.")
	}
	if len(v.Run.Unresponsive) > 0 {
		p.Integrity = append(p.Integrity, "Unresponsive at the end: "+strings.Join(v.Run.Unresponsive, ", ")+".")
	}
	modes := make([]string, 0, len(v.Statistics.WaitByMode))
	for m := range v.Statistics.WaitByMode {
		modes = append(modes, m)
	}
	sort.Strings(modes)
	for _, m := range modes {
		p.WaitModes = append(p.WaitModes, modeRow{Mode: m + " waits", P: v.Statistics.WaitByMode[m]})
	}
	outs := make([]string, 0, len(v.Statistics.Outcomes))
	for o := range v.Statistics.Outcomes {
		outs = append(outs, o)
	}
	sort.Strings(outs)
	for _, o := range outs {
		p.OutcomeRows = append(p.OutcomeRows, countRow{Name: o, N: v.Statistics.Outcomes[o]})
	}
	p.FSText = fsText(v.Hosts)
	p.Timeline = buildTimeline(v)
	p.GraphSVG = buildGraphSVG(v)
	p.Hist = buildHist(v.Statistics.Histogram)
	p.Ticket = ticketFor(v.Hosts)
	return p
}

// fsText names the file systems of the run: "lustre (flock)", "ext4".
func fsText(hosts []HostView) string {
	seen := map[string]bool{}
	var out []string
	for _, h := range hosts {
		t := h.FSType
		if h.MountType != "" && h.MountType != h.FSType {
			t = h.MountType
		}
		if h.LockOptions != "" {
			t += " (" + h.LockOptions + ")"
		}
		if t != "" && !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return strings.Join(out, ", ")
}

// headline splits a long verdict sentence at its first dash: the claim as the heading, the
// particulars below it.
func headline(summary string) (string, string) {
	const long, detail = 200, 80
	if len(summary) <= long {
		return summary, ""
	}
	if h, d, ok := strings.Cut(summary, " — "); ok && len(d) > detail {
		return h, d
	}
	return summary, ""
}
