package scenario

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/*.txtar")

// TestGolden parses the scenario section of each testdata/*.txtar, expands it and compares the
// dump (or the error) with the want section. The archive comment may set procs=N (else the
// header's procs, else 3) and files=a,b (else /tmp/f).
func TestGolden(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no testdata/*.txtar")
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			src, wantIdx := section(ar, "scenario"), -1
			for i, f := range ar.Files {
				if f.Name == "want" {
					wantIdx = i
				}
			}
			if src == nil {
				t.Fatalf("%s: no -- scenario -- section", path)
			}
			got := golden(t, filepath.Base(path), string(ar.Comment), src)
			if *update {
				if wantIdx < 0 {
					ar.Files = append(ar.Files, txtar.File{Name: "want"})
					wantIdx = len(ar.Files) - 1
				}
				ar.Files[wantIdx].Data = []byte(got)
				if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if wantIdx < 0 {
				t.Fatalf("%s: no -- want -- section (run go test -update)", path)
			}
			if want := string(ar.Files[wantIdx].Data); got != want {
				t.Errorf("%s: got\n%s\nwant\n%s", path, got, want)
			}
		})
	}
}

func section(ar *txtar.Archive, name string) []byte {
	for _, f := range ar.Files {
		if f.Name == name {
			return f.Data
		}
	}
	return nil
}

// golden renders what a test case's want section holds.
func golden(t *testing.T, name, comment string, src []byte) string {
	t.Helper()
	procs, files := 0, []string{"/tmp/f"}
	for _, field := range strings.Fields(comment) {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			continue
		}
		switch k {
		case "procs":
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: bad procs in comment: %v", name, err)
			}
			procs = n
		case "files":
			files = strings.Split(v, ",")
		}
	}
	s, err := Parse(name, bytes.NewReader(src), ParseOptions{})
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	if procs == 0 {
		procs = s.Header.Procs.Or(3)
	}
	q, err := s.Queues(procs, files)
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	var b strings.Builder
	if s.Description != "" {
		b.WriteString("description: " + s.Description + "\n")
	}
	b.WriteString(s.Header.String())
	b.WriteString(Format(q))
	return b.String()
}
