package locktable

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sample() *Table {
	at := time.Unix(1764625000, 123456789).UTC()
	return &Table{At: at, Mode: "flock", Detect: "first", Faults: []string{"drop-grant:node=1"},
		Locks: []Lock{
			{ID: 3, State: Granted, Node: 0, PID: 1234, Kind: "fcntl", Type: "write", Start: 0, End: -1, Path: "/a b\"c", Owner: 0x1a2b, Enqueued: at, Granted: at},
			{ID: 4, State: Waiting, Node: 1, PID: 1240, Kind: "flock", Type: "read", Start: 0, End: -1, Path: "/f", Owner: 7, Enqueued: at, BlockedBy: 3},
		},
		Events: []Event{{At: at, Lock: 4, Node: 1, What: "granted; completion dropped (drop-grant:node=1)"}}}
}

func TestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, sample()); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(&b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	want := sample()
	norm := func(tb *Table) {
		tb.At = tb.At.UTC()
		for i := range tb.Locks {
			tb.Locks[i].Enqueued, tb.Locks[i].Granted = utc(tb.Locks[i].Enqueued), utc(tb.Locks[i].Granted)
		}
		for i := range tb.Events {
			tb.Events[i].At = utc(tb.Events[i].At)
		}
	}
	norm(got)
	norm(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

func TestParseErrors(t *testing.T) {
	var b bytes.Buffer
	_ = Write(&b, sample())
	full := b.String()
	for _, tc := range []struct{ name, text, err string }{
		{"empty", "", "empty dump"},
		{"header", "gluster dump\n", "line 1"},
		{"no end", strings.TrimSuffix(full, "end\n"), "incomplete"},
		{"after end", full + "mode x\n", "after the end"},
		{"bad record", Header + "\nlocks x\nend\n", "unknown record"},
		{"bad key", Header + "\nlock id=1 colour=red\nend\n", "unknown key"},
		{"bad number", Header + "\nlock id=x\nend\n", "lock id"},
		{"bad quote", Header + "\nlock path=\"abc\nend\n", "bad quoted"},
		{"dup", Header + "\nlock id=1 id=2\nend\n", "twice"},
		{"bad time", Header + "\nat yesterday\nend\n", "line 2"},
	} {
		if _, err := Parse(strings.NewReader(tc.text)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
		}
	}
}

func FuzzParse(f *testing.F) {
	var b bytes.Buffer
	_ = Write(&b, sample())
	f.Add(b.String())
	f.Add(Header + "\nend\n")
	f.Fuzz(func(t *testing.T, s string) {
		tb, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Write(&out, tb); err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(&out); err != nil {
			t.Fatalf("a parsed table does not parse back: %v\n%s", err, out.String())
		}
	})
}
