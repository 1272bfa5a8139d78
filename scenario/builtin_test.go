package scenario

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lockprobe/lockprobe/proto"
)

func TestBuiltins(t *testing.T) {
	want := []string{"abba", "abba2", "casacore", "contend", "hold", "ring", "seed", "storm", "upgrade"}
	var names []string
	for _, in := range Builtins() {
		names = append(names, in.Name)
		if in.Description == "" || strings.Contains(in.Description, "\n") {
			t.Errorf("%s: description %q is not one line", in.Name, in.Description)
		}
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Builtins() = %v, want %v", names, want)
	}
	for _, in := range Builtins() {
		s, err := Builtin(in.Name)
		if err != nil {
			t.Errorf("%s: %v", in.Name, err)
			continue
		}
		if s.Description != in.Description || s.Name != in.Name || s.Text == "" {
			t.Errorf("%s: Scenario{Name %q, Description %q, %d bytes of text}", in.Name, s.Name, s.Description, len(s.Text))
		}
		for _, procs := range []int{1, 2, 13} {
			q, err := s.Queues(procs, []string{"/tmp/lockprobe-test"})
			if err != nil {
				t.Errorf("%s, %d lockers: %v", in.Name, procs, err)
				continue
			}
			for id, cmds := range q {
				if len(cmds) == 0 || cmds[len(cmds)-1].Op != proto.OpStop {
					t.Errorf("%s, %d lockers: locker %d does not end with stop", in.Name, procs, id)
				}
				for _, c := range cmds {
					roundTrip(t, in.Name, c)
				}
			}
		}
	}
	if _, ok := findInfo(DefaultBuiltin); !ok {
		t.Errorf("DefaultBuiltin %q is not a built-in", DefaultBuiltin)
	}
}

func findInfo(name string) (Info, bool) {
	for _, in := range Builtins() {
		if in.Name == name {
			return in, true
		}
	}
	return Info{}, false
}

// roundTrip checks that a command's String parses back to the same command.
func roundTrip(t *testing.T, name string, c proto.Command) {
	t.Helper()
	s, err := Parse("roundtrip", strings.NewReader(c.String()), ParseOptions{})
	if err != nil {
		t.Errorf("%s: %q does not parse back: %v", name, c.String(), err)
		return
	}
	q, err := s.Queues(1, nil)
	if err != nil {
		t.Errorf("%s: %q does not expand: %v", name, c.String(), err)
		return
	}
	got := q[0][0]
	got.Line, got.Text = c.Line, c.Text
	if !got.Abs.Equal(c.Abs) {
		t.Errorf("%s: %q parses back to time %v, want %v", name, c.String(), got.Abs, c.Abs)
	}
	got.Abs = c.Abs
	if !reflect.DeepEqual(got, c) {
		t.Errorf("%s: %q parses back to %+v, want %+v", name, c.String(), got, c)
	}
}

func TestBuiltinUnknown(t *testing.T) {
	for _, name := range []string{"", "nope", "../scenario", "contend.lps"} {
		if _, err := Builtin(name); !errors.Is(err, ErrUnknownBuiltin) {
			t.Errorf("Builtin(%q) = %v, want ErrUnknownBuiltin", name, err)
		}
	}
}

func TestLoad(t *testing.T) {
	s, err := Load("", ParseOptions{})
	if err != nil || s.Name != DefaultBuiltin {
		t.Fatalf("Load(\"\") = %v, %v", s, err)
	}
	path := t.TempDir() + "/mine.lps"
	if err := writeFile(path, "0: file@{file}\n0: write\n"); err != nil {
		t.Fatal(err)
	}
	if s, err = Load(path, ParseOptions{}); err != nil || s.Name != path {
		t.Fatalf("Load(file) = %v, %v", s, err)
	}
	if _, err := Load(t.TempDir()+"/missing", ParseOptions{}); err == nil {
		t.Errorf("Load(missing file): no error")
	}
}

// TestLineText checks the Line and Text every command carries for evidence.
func TestLineText(t *testing.T) {
	src := "procs 2\n\n1: write@+1s   # comment\n  all:  stop\n"
	s, err := Parse("t", strings.NewReader(src), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := s.Queues(2, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := [][2]any{}
	for _, c := range q[1] {
		got = append(got, [2]any{c.Line, c.Text})
	}
	want := [][2]any{{3, "1: write@+1s"}, {4, "all:  stop"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if s.Text != src {
		t.Errorf("Text = %q, want the source", s.Text)
	}
}

func TestHeaderOr(t *testing.T) {
	s, err := Parse("t", strings.NewReader("procs 5\nstop\n"), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Header.Procs.Or(3); got != 5 {
		t.Errorf("Procs.Or = %d, want 5", got)
	}
	if got := s.Header.Timeout.Or(7); got != 7 {
		t.Errorf("Timeout.Or = %d, want the default 7", got)
	}
}
