package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o644) }

// FuzzParse checks that no input makes Parse or Queues panic, that errors are one line, and
// that every command they produce is valid.
func FuzzParse(f *testing.F) {
	for _, in := range Builtins() {
		if s, err := Builtin(in.Name); err == nil {
			f.Add(s.Text)
		}
	}
	paths, _ := filepath.Glob("testdata/*.txtar")
	for _, p := range paths {
		if ar, err := txtar.ParseFile(p); err == nil {
			f.Add(string(section(ar, "scenario")))
		}
	}
	f.Add("0:read@2025-01-02T03:04:05Z\n1-{last}:sleep@7")
	f.Add("all: file@{file}\n0: write@2026-12-01 21:30:00\n1: release@2026-12-01 21:30:00.5\n")
	f.Add("procs \r 0")
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Parse("fuzz", strings.NewReader(src), ParseOptions{MaxCommands: 1000})
		if err != nil {
			oneLine(t, err)
			return
		}
		for _, procs := range []int{1, 3} {
			q, err := s.Queues(procs, []string{"/tmp/f", "/tmp/g"})
			if err != nil {
				oneLine(t, err)
				continue
			}
			for _, cmds := range q {
				for _, c := range cmds {
					if err := c.Validate(); err != nil {
						t.Fatalf("invalid command %+v: %v", c, err)
					}
				}
			}
		}
	})
}

// oneLine checks what a user sees of a bad scenario: one short line starting with the name,
// with nothing a terminal would act on (a carriage return, an escape sequence).
func oneLine(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, "fuzz:") || len(msg) > 400 {
		t.Fatalf("error is not one short line starting with the name (%d bytes): %q", len(msg), msg)
	}
	for _, r := range msg {
		if r < ' ' || r == 0x7f {
			t.Fatalf("error holds the control character %q: %q", r, msg)
		}
	}
}
