package reports

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/lockprobe/lockprobe/analysis"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenOpts are the options of the golden files; the file names say which were used.
var goldenOpts = Options{OutDir: "out", Version: "v0.0.0-test", EndReason: "", Color: false}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./reports -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; run go test ./reports -update and read the diff.\ngot:\n%s", name, got)
	}
}

func TestGoldenJSON(t *testing.T) {
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			res := fixtureResult(t, name)
			var buf bytes.Buffer
			if err := JSON(&buf, res, goldenOpts); err != nil {
				t.Fatal(err)
			}
			checkJSON(t, buf.Bytes(), res)
			golden(t, name+".verdict.json", buf.Bytes())
		})
	}
}

func TestGoldenTerminal(t *testing.T) {
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			res := fixtureResult(t, name)
			var buf bytes.Buffer
			if err := Terminal(&buf, res, goldenOpts); err != nil {
				t.Fatal(err)
			}
			if first, _, _ := strings.Cut(buf.String(), "\n"); !strings.HasPrefix(first, "verdict: ") {
				t.Errorf("the verdict must come first, got %q", first)
			}
			golden(t, name+".terminal.txt", buf.Bytes())
		})
	}
	t.Run("deadlock-upgrade.color.online", func(t *testing.T) {
		res := fixtureResult(t, "deadlock-upgrade")
		opts := goldenOpts
		opts.Color, opts.DetectionLatency, opts.EndReason = true, 123*time.Millisecond, "hang"
		opts.Killed = []string{"locker 0 (pid 10)"}
		var buf bytes.Buffer
		if err := Terminal(&buf, res, opts); err != nil {
			t.Fatal(err)
		}
		golden(t, "deadlock-upgrade.color.online.terminal.txt", buf.Bytes())
	})
}

// checkJSON checks what scripts rely on: the verdict's class and exit, and no null slices.
func checkJSON(t *testing.T, data []byte, res *analysis.Result) {
	t.Helper()
	var v View
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if v.Verdict.Class != res.Verdict.Class || v.Verdict.Exit != res.Verdict.Exit || v.Schema != Schema {
		t.Errorf("verdict %s/%d schema %s, want %s/%d", v.Verdict.Class, v.Verdict.Exit, v.Schema, res.Verdict.Class, res.Verdict.Exit)
	}
	if bytes.Contains(data, []byte("null")) {
		t.Errorf("verdict.json holds a null: every list must be [] when empty")
	}
}

func TestHTMLFixtures(t *testing.T) {
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			res := fixtureResult(t, name)
			var buf bytes.Buffer
			if err := HTML(&buf, res, goldenOpts); err != nil {
				t.Fatal(err)
			}
			writeOut(t, name+".html", buf.Bytes())
			p := checkHTML(t, buf.Bytes())
			h, d := headline(Summary(res))
			if !strings.Contains(p.text, h) || !strings.Contains(p.text, d) {
				t.Errorf("the verdict sentence is not on the page: %q", Summary(res))
			}
			if !strings.Contains(p.text, classTitle(res.Verdict.Class)) {
				t.Errorf("the verdict title %q is not on the page", classTitle(res.Verdict.Class))
			}
			for _, id := range []string{"verdict", "timeline", "graph", "lockers", "proc-locks", "stats", "hosts", "reproduce", "ticket"} {
				if !p.ids[id] {
					t.Errorf("no element with id %q", id)
				}
			}
			if len(res.Attempts) > 0 && p.svgs < 2 { // a run that never started has no histogram
				t.Errorf("%d svg elements, want the timeline and the histogram at least", p.svgs)
			}
			if len(res.Graph.Nodes) > 0 && !p.classes["wfg"] {
				t.Errorf("the wait-for graph is not drawn")
			}
			if len(res.Graph.Cycles) > 0 && !p.classes["cycle"] {
				t.Errorf("the cycle is not highlighted")
			}
		})
	}
}

// parsed is what checkHTML found on a page.
type parsed struct {
	text    string
	ids     map[string]bool
	classes map[string]bool
	svgs    int
	scripts int
}

// checkHTML parses a report and checks that it is self-contained: no external script, style
// sheet, font or image, no link element, and no URL that leaves the page.
func checkHTML(t *testing.T, data []byte) parsed {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	p := parsed{ids: map[string]bool{}, classes: map[string]bool{}}
	var text strings.Builder
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		switch n.Type {
		case html.TextNode:
			if n.Parent == nil || (n.Parent.Data != "script" && n.Parent.Data != "style") {
				text.WriteString(n.Data)
			}
		case html.ElementNode:
			switch n.Data {
			case "link", "iframe", "object", "embed", "img", "base":
				t.Errorf("<%s> element: the report must be self-contained", n.Data)
			case "script":
				p.scripts++
			case "svg":
				p.svgs++
			case "style":
				if n.FirstChild != nil && (strings.Contains(n.FirstChild.Data, "@import") || strings.Contains(n.FirstChild.Data, "@font-face")) {
					t.Errorf("the style sheet imports or loads fonts")
				}
			}
			for _, a := range n.Attr {
				switch a.Key {
				case "id":
					p.ids[a.Val] = true
				case "class":
					for _, c := range strings.Fields(a.Val) {
						p.classes[c] = true
					}
				case "src", "srcset", "poster", "action", "formaction", "background":
					t.Errorf("<%s %s=%q>: nothing may be loaded", n.Data, a.Key, a.Val)
				case "href", "xlink:href":
					if !strings.HasPrefix(a.Val, "#") {
						t.Errorf("<%s %s=%q>: links may only point inside the page", n.Data, a.Key, a.Val)
					}
				}
				if v := strings.ToLower(a.Val); strings.Contains(v, "url(") && !strings.Contains(v, "url(#") {
					t.Errorf("<%s %s=%q>: url() outside the page", n.Data, a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for _, s := range []string{"http://", "https://", "//cdn", "url(http"} {
		// The page may show such text from the run, escaped; it must not use it.
		if bytes.Contains(bytes.ToLower(styleAndScript(doc)), []byte(s)) {
			t.Errorf("the inline style or script mentions %q", s)
		}
	}
	p.text = strings.Join(strings.Fields(text.String()), " ")
	return p
}

// styleAndScript gathers the contents of <style> and <script> elements.
func styleAndScript(doc *html.Node) []byte {
	var out bytes.Buffer
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "style" || n.Data == "script") && n.FirstChild != nil {
			out.WriteString(n.FirstChild.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out.Bytes()
}

func TestWriteAll(t *testing.T) {
	dir := t.TempDir()
	res := fixtureResult(t, "deadlock-upgrade")
	if err := WriteAll(res, Options{OutDir: dir, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{HTMLFile, VerdictFile, DOTFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Size() == 0 {
			t.Errorf("%s: %v (size %d)", f, err, st.Size())
		}
	}
	dot, _ := os.ReadFile(filepath.Join(dir, DOTFile))
	if !bytes.Contains(dot, []byte("digraph")) {
		t.Errorf("waitfor.dot is no DOT graph:\n%s", dot)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestDOT(t *testing.T) {
	res := fixtureResult(t, "deadlock-two-files")
	var b bytes.Buffer
	if err := DOT(&b, res); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"digraph waitfor", "L0 -> L1", "L1 -> L0", "color=red", "lockprobe.dat.2", `label="locker 0\npid`} {
		if !strings.Contains(out, want) {
			t.Errorf("DOT lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := DOT(&b, nil); err != nil || !strings.Contains(b.String(), "digraph waitfor") {
		t.Errorf("empty graph: %v\n%s", err, b.String())
	}
}

func TestNilAndEmpty(t *testing.T) {
	for name, res := range map[string]*analysis.Result{"nil": nil, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := HTML(&buf, res, Options{}); err != nil {
				t.Fatal(err)
			}
			checkHTML(t, buf.Bytes())
			buf.Reset()
			if err := JSON(&buf, res, Options{}); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(buf.Bytes(), []byte("null")) {
				t.Errorf("null in verdict.json of an empty result:\n%s", buf.Bytes())
			}
			buf.Reset()
			if err := Terminal(&buf, res, Options{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
