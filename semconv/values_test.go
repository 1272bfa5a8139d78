package semconv

import (
	"encoding/json"
	"strings"
	"testing"
)

// set is what the tests need of every value set.
type set struct {
	name    string
	parse   func(string) (string, error) // parse, then String of the result
	names   []string                     // every name, the zero value's first
	unknown string                       // a name the set does not have
	err     string                       // the start of its error
}

func sets() []set {
	wrap := func(f func(string) (fmtStringer, error)) func(string) (string, error) {
		return func(s string) (string, error) {
			v, err := f(s)
			if err != nil {
				return "", err
			}
			return v.String(), nil
		}
	}
	return []set{
		{"kind", wrap(func(s string) (fmtStringer, error) { return ParseKind(s) }), []string{"", "posix", "ofd", "flock"}, "fcntl", `kind "fcntl" is not posix, ofd or flock`},
		{"mode", wrap(func(s string) (fmtStringer, error) { return ParseMode(s) }), []string{"none", "read", "write"}, "exclusive", `mode "exclusive" is not none, read or write`},
		{"style", wrap(func(s string) (fmtStringer, error) { return ParseStyle(s) }), []string{"", "wait", "try", "poll"}, "spin", `style "spin" is not wait, try or poll`},
		{"outcome", wrap(func(s string) (fmtStringer, error) { return ParseOutcome(s) }), []string{"waiting", "granted", "would-block", "deadlock", "error", "blocked"}, "ok", `outcome "ok" is not waiting, granted`},
		{"hold end", wrap(func(s string) (fmtStringer, error) { return ParseHoldEnd(s) }), []string{"open", "release", "releaseif", "close", "converted", "exit", "run-end"}, "stop", `hold end "stop" is not open, release`},
		{"owner class", wrap(func(s string) (fmtStringer, error) { return ParseOwnerClass(s) }), []string{"none", "locker", "self", "foreign", "unknown"}, "peer", `owner class "peer" is not none, locker`},
	}
}

type fmtStringer interface{ String() string }

func TestValueSets(t *testing.T) {
	for _, s := range sets() {
		t.Run(s.name, func(t *testing.T) {
			for _, n := range s.names {
				got, err := s.parse(n)
				if err != nil || got != n {
					t.Errorf("parse %q = %q, %v; want it back", n, got, err)
				}
			}
			if got, err := s.parse(""); err != nil || got != s.names[0] {
				t.Errorf("parse \"\" = %q, %v; want the zero value %q", got, err, s.names[0])
			}
			_, err := s.parse(s.unknown)
			if err == nil || !strings.HasPrefix(err.Error(), s.err) {
				t.Errorf("parse %q: error %v, want one starting %q", s.unknown, err, s.err)
			}
			if _, err := s.parse(strings.ToUpper(s.names[1])); err == nil {
				t.Errorf("parse %q: names are case-sensitive, want an error", strings.ToUpper(s.names[1]))
			}
		})
	}
}

func TestValueText(t *testing.T) {
	type cmd struct {
		Kind  Kind  `json:"kind,omitempty"`
		Mode  Mode  `json:"mode"`
		Style Style `json:"style"`
	}
	b, err := json.Marshal(cmd{Kind: KindOFD, Mode: ModeWrite, Style: StylePoll})
	if err != nil || string(b) != `{"kind":"ofd","mode":"write","style":"poll"}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	if b, _ := json.Marshal(cmd{}); string(b) != `{"mode":"none","style":""}` {
		t.Errorf("zero values marshal to %s; omitempty must drop an unset kind", b)
	}
	var c cmd
	if err := json.Unmarshal([]byte(`{"kind":"flock","mode":"read","style":"try"}`), &c); err != nil || c != (cmd{KindFlock, ModeRead, StyleTry}) {
		t.Errorf("unmarshal = %+v, %v", c, err)
	}
	for _, bad := range []string{`{"kind":"lockf"}`, `{"kind":1}`, `{"mode":"READ"}`} {
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("unmarshal %s: want an error", bad)
		}
	}
	if _, err := json.Marshal(cmd{Kind: Kind(9)}); err == nil {
		t.Error("a kind with no name must not marshal")
	}
	m, err := json.Marshal(map[Outcome]int{OutcomeGranted: 2, OutcomeBlocked: 1})
	if err != nil || string(m) != `{"blocked":1,"granted":2}` {
		t.Errorf("map keyed by outcome = %s, %v; want names, sorted", m, err)
	}
}

func TestValueStringAndValid(t *testing.T) {
	if KindFlock.String() != "flock" || Kind(9).String() != "kind(9)" || HoldRunEnd.String() != "run-end" {
		t.Errorf("String: %s %s %s", KindFlock, Kind(9), HoldRunEnd)
	}
	if !KindFlock.Valid() || Kind(4).Valid() || !OwnerUnknown.Valid() || OwnerClass(5).Valid() {
		t.Error("Valid disagrees with the name tables")
	}
}

func FuzzParseKind(f *testing.F) {
	for _, s := range []string{"", "posix", "ofd", "flock", "POSIX", "posix ", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKind(s)
		if err != nil {
			if k != KindUnset {
				t.Fatalf("error %v with value %s", err, k)
			}
			return
		}
		if k.String() != s {
			t.Fatalf("parse %q gave %s", s, k)
		}
	})
}
