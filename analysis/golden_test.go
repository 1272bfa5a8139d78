package analysis_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/analysis/fixture"
	"github.com/lockprobe/lockprobe/reports"
	"github.com/lockprobe/lockprobe/tracefile"
)

var update = flag.Bool("update", false, "rewrite the -- expect -- sections of testdata/*.txtar")

// TestGolden turns every fixture into a real trace file, reads it back, analyses it and compares
// the verdict, findings and evidence with the fixture's expect section.
func TestGolden(t *testing.T) {
	eachFixture(t, func(t *testing.T, path string, ar *txtar.Archive) {
		trace := section(ar, "trace")
		if trace == nil {
			t.Fatal("no -- trace -- section")
		}
		res, tr := analyzeFixture(t, trace)
		got := expectText(res)
		if errs := analysis.Validate(tr); len(errs) > 0 && !strings.Contains(string(trace), "# invalid") {
			t.Errorf("trace breaks invariants: %v", errs)
		}
		if *update {
			setSection(ar, "expect", []byte(got))
			if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		want := section(ar, "expect")
		if string(want) != got {
			t.Errorf("expect differs (run with -update to accept)\n--- got\n%s--- want\n%s", got, want)
		}
	})
}

// eachFixture runs fn as a subtest for every golden fixture, parsed.
func eachFixture(t *testing.T, fn func(t *testing.T, path string, ar *txtar.Archive)) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fn(t, path, ar)
		})
	}
}

// analyzeFixture writes the fixture as a trace file, reads it back and analyses it.
func analyzeFixture(t *testing.T, src []byte) (*analysis.Result, *tracefile.Trace) {
	t.Helper()
	fx, err := fixture.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tracefile.Open(writeFixture(t, fx))
	if err != nil {
		t.Fatal(err)
	}
	return analysis.Analyze(tr, analysis.Options{}), tr
}

// writeFixture writes the fixture's records as a trace file and returns its path.
func writeFixture(t *testing.T, fx *fixture.Fixture) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), tracefile.FileName)
	w, err := tracefile.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.WriteTrace(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func section(ar *txtar.Archive, name string) []byte {
	for _, f := range ar.Files {
		if f.Name == name {
			return f.Data
		}
	}
	return nil
}

func setSection(ar *txtar.Archive, name string, data []byte) {
	for i := range ar.Files {
		if ar.Files[i].Name == name {
			ar.Files[i].Data = data
			return
		}
	}
	ar.Files = append(ar.Files, txtar.File{Name: name, Data: data})
}

func rel(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return "+" + time.Duration(ns-fixture.Base).String()
}

// expectText is the readable dump the expect sections hold: what the analysis found, in the
// reports' words (the sentences are the reports' job; verdict.json carries the same).
func expectText(r *analysis.Result) string {
	v := reports.NewView(r, reports.Options{})
	var b bytes.Buffer
	fmt.Fprintf(&b, "verdict %s exit=%d", v.Verdict.Class, v.Verdict.Exit)
	if v.Verdict.Unjudged != "" {
		fmt.Fprintf(&b, " unjudged=%s", v.Verdict.Unjudged)
	}
	b.WriteString("\n")
	for _, f := range v.Findings {
		fmt.Fprintf(&b, "finding %s exit=%d lockers=%v file=%s range=%s mode=%s formed=%s duration=%s resolved=%v\n",
			f.Class, f.Exit, f.Lockers, f.File, f.Range, f.Mode, rel(f.FormedNS), time.Duration(f.DurationNS), f.Resolved)
		fmt.Fprintf(&b, "  summary: %s\n", f.Summary)
		for _, e := range f.Evidence {
			fmt.Fprintf(&b, "  evidence %s %s %s: %s\n", rel(e.AtNS), e.Source, e.By, e.Text)
		}
	}
	if g := v.Graph; len(g.Edges) > 0 {
		fmt.Fprintf(&b, "graph at %s\n", rel(g.AtNS))
		for _, e := range g.Edges {
			fmt.Fprintf(&b, "  edge %d -> %d since %s: %s %s %s %s (%s)\n", e.From, e.To, rel(e.SinceNS), e.Kind, e.Mode, e.Range, e.File, strings.Join(e.Sources, "+"))
		}
		for _, c := range g.Cycles {
			fmt.Fprintf(&b, "  cycle %v\n", c)
		}
	}
	return b.String()
}
