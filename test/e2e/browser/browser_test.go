package browser

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/analysis/fixture"
	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/reports"
	"github.com/lockprobe/lockprobe/tracefile"
)

// outDir is where the reports and screenshots go: $LOCKPROBE_E2E_OUT/browser when set (to keep
// them), else a temporary folder.
func outDir(t *testing.T, name string) string {
	base := os.Getenv("LOCKPROBE_E2E_OUT")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, "browser", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromium finds Debian's chromium, installing it when missing (root only).
func chromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if !isRoot() {
		t.Skip("chromium is not installed and installing it needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "chromium"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium still missing after apt-get install: %v", err)
	}
	return p
}

// fixtureReport writes the reports of an analysis fixture into dir.
func fixtureReport(t *testing.T, name, dir string) {
	t.Helper()
	ar, err := txtar.ParseFile(filepath.Join("..", "..", "..", "analysis", "testdata", name+".txtar"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ar.Files {
		if f.Name != "trace" {
			continue
		}
		fx, err := fixture.Parse(f.Data)
		if err != nil {
			t.Fatal(err)
		}
		res := analysis.Analyze(fx.Trace(), analysis.Options{})
		if err := reports.WriteAll(res, reports.Options{OutDir: dir, Version: "e2e"}); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s: no trace section", name)
}

func TestDeadlockFixtureReport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := chromium(t)
	dir := outDir(t, "deadlock-upgrade")
	fixtureReport(t, "deadlock-upgrade", dir)
	CheckReport(t, bin, dir, "Deadlock")
}

// TestMillionAttemptReport opens the report of a run of 10^6 attempts (a synthetic trace of ten
// lockers taking turns, written as lockers write it), whose timeline is aggregated to what a
// screen shows: it must load and show the verdict, timeline and graph like any other; its size
// and open time are printed (the goals, < 10 MB and < 3 s, are figures, not assertions).
func TestMillionAttemptReport(t *testing.T) {
	if testing.Short() {
		t.Skip("analyses 10^6 attempts and starts a browser")
	}
	bin := chromium(t)
	dir := outDir(t, "million")
	path := filepath.Join(t.TempDir(), tracefile.FileName)
	if err := lptest.SynthTrace(path, 3_000_000, 10); err != nil {
		t.Fatal(err)
	}
	// Read as `lockprobe analyze` reads it: streamed into the model.
	b := analysis.NewBuilder(analysis.Options{})
	tr, err := tracefile.StreamFile(path, tracefile.StreamOptions{Release: analysis.Streamed, Done: b.Add})
	if err != nil {
		t.Fatal(err)
	}
	res := b.Finish(tr)
	if len(res.Attempts) < 1_000_000 {
		t.Fatalf("%d attempts in the synthetic run, want 10^6", len(res.Attempts))
	}
	if err := reports.WriteAll(res, reports.Options{OutDir: dir, Version: "e2e"}); err != nil {
		t.Fatal(err)
	}
	CheckReport(t, bin, dir, "Healthy")
}

// CheckReport opens dir/report.html from file:// in headless chromium, with JavaScript on and
// off, and checks that it loads nothing, logs no error, and shows the verdict (containing
// verdictWord), the timeline and the wait-for graph. It saves report.png (and report-nojs.png)
// into dir. A test of a real run calls it on the run's output folder.
func CheckReport(t *testing.T, bin, dir, verdictWord string) {
	t.Helper()
	page := filepath.Join(dir, reports.HTMLFile)
	abs, err := filepath.Abs(page)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := startBrowser(ctx, t, bin)
	size := int64(-1)
	if st, err := os.Stat(page); err == nil {
		size = st.Size()
	}
	for _, js := range []bool{true, false} {
		shot := filepath.Join(dir, "report.png")
		if !js {
			shot = filepath.Join(dir, "report-nojs.png")
		}
		open := checkPage(ctx, t, b.cdp, "file://"+abs, js, verdictWord, shot)
		// The open time is a figure, not a test: printed for the closing note and BENCHMARKS.md.
		fmt.Printf("%s: report.html of %d bytes opened (navigate → load event) in %s, JavaScript %v\n", t.Name(), size, open.Round(time.Millisecond), js)
	}
}

// checkPage opens url and checks what it shows; it returns the time from the navigation to the
// page's load event.
func checkPage(ctx context.Context, t *testing.T, c *cdp, url string, js bool, verdictWord, shot string) time.Duration {
	t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := c.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := c.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		t.Fatal(err)
	}
	s := att.SessionID
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable", "Network.enable"} {
		if err := c.call(ctx, s, m, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.call(ctx, s, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		t.Fatal(err)
	}
	if !js {
		if err := c.call(ctx, s, "Emulation.setScriptExecutionDisabled", map[string]any{"value": true}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	t0 := time.Now()
	if err := c.call(ctx, s, "Page.navigate", map[string]any{"url": url}, &nav); err != nil || nav.ErrorText != "" {
		t.Fatalf("navigate to %s: %v %s", url, err, nav.ErrorText)
	}
	if _, err := c.waitEvent(ctx, s, "Page.loadEventFired"); err != nil {
		t.Fatal(err)
	}
	open := time.Since(t0)
	// What the page shows: each element's box must have an area, the verdict its word.
	var eval struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
		ExceptionDetails json.RawMessage `json:"exceptionDetails"`
	}
	// A healthy run's wait-for graph is empty: the figure says so in words instead of a drawing.
	graph := "#graph-figure svg"
	if strings.EqualFold(verdictWord, "healthy") {
		graph = "#graph-figure p"
	}
	expr := `JSON.stringify(["#verdict-text", "#timeline-figure svg", "` + graph + `", "#lockers table", "#ticket pre"].map(function (q) {
		var el = document.querySelector(q);
		if (!el) { return {q: q, w: 0, h: 0, text: ""}; }
		var r = el.getBoundingClientRect();
		return {q: q, w: r.width, h: r.height, text: (el.textContent || "").slice(0, 200)};
	}).concat([{q: "zoom buttons", w: document.querySelectorAll(".zoom button").length, h: 1, text: ""}]))`
	if err := c.call(ctx, s, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &eval); err != nil {
		t.Fatal(err)
	}
	if len(eval.ExceptionDetails) > 0 {
		t.Fatalf("evaluate: %s", eval.ExceptionDetails)
	}
	var boxes []struct {
		Q    string  `json:"q"`
		W    float64 `json:"w"`
		H    float64 `json:"h"`
		Text string  `json:"text"`
	}
	if err := json.Unmarshal([]byte(eval.Result.Value), &boxes); err != nil {
		t.Fatalf("decode %q: %v", eval.Result.Value, err)
	}
	for _, bx := range boxes {
		switch {
		case bx.Q == "zoom buttons":
			if js && bx.W == 0 {
				t.Errorf("js on: the script did not add the zoom buttons")
			}
			if !js && bx.W != 0 {
				t.Errorf("js off: zoom buttons appeared")
			}
		case bx.W <= 0 || bx.H <= 0:
			t.Errorf("js %v: %s is not visible (%gx%g)", js, bx.Q, bx.W, bx.H)
		}
		if bx.Q == "#verdict-text" && !strings.Contains(strings.ToLower(bx.Text), strings.ToLower(verdictWord)) {
			t.Errorf("the verdict says %q, want it to mention %q", bx.Text, verdictWord)
		}
	}
	saveScreenshot(ctx, t, c, s, shot)
	for _, e := range c.eventsOf(s) {
		if msg := badEvent(e); msg != "" {
			t.Errorf("js %v: %s", js, msg)
		}
	}
	if err := c.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": target.TargetID}, nil); err != nil {
		t.Logf("close page: %v", err)
	}
	return open
}

// badEvent says what is wrong with an event: a console error, an exception, a log error, or a
// request for anything but the file itself.
func badEvent(e cdpMsg) string {
	switch e.Method {
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string            `json:"type"`
			Args []json.RawMessage `json:"args"`
		}
		json.Unmarshal(e.Params, &p)
		if p.Type == "error" || p.Type == "assert" {
			return fmt.Sprintf("console %s: %s", p.Type, p.Args)
		}
	case "Runtime.exceptionThrown":
		return "uncaught exception: " + string(e.Params)
	case "Log.entryAdded":
		var p struct {
			Entry struct {
				Level, Text, URL string
			} `json:"entry"`
		}
		json.Unmarshal(e.Params, &p)
		if p.Entry.Level == "error" {
			return fmt.Sprintf("log %s: %s %s", p.Entry.Level, p.Entry.Text, p.Entry.URL)
		}
	case "Network.requestWillBeSent":
		var p struct {
			Request struct {
				URL string `json:"url"`
			} `json:"request"`
		}
		json.Unmarshal(e.Params, &p)
		if u := p.Request.URL; !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "about:") {
			return "network request: " + u
		}
	}
	return ""
}

// saveScreenshot captures the whole page as a PNG.
func saveScreenshot(ctx context.Context, t *testing.T, c *cdp, s, path string) {
	t.Helper()
	var metrics struct {
		CSSContentSize struct {
			Width  float64 `json:"width"`
			Height float64 `json:"height"`
		} `json:"cssContentSize"`
	}
	if err := c.call(ctx, s, "Page.getLayoutMetrics", nil, &metrics); err != nil {
		t.Fatal(err)
	}
	var shot struct {
		Data string `json:"data"`
	}
	clip := map[string]any{"x": 0, "y": 0, "width": metrics.CSSContentSize.Width, "height": metrics.CSSContentSize.Height, "scale": 1}
	if err := c.call(ctx, s, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true, "clip": clip}, &shot); err != nil {
		t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes, page %gx%g)", path, len(png), metrics.CSSContentSize.Width, metrics.CSSContentSize.Height)
}
