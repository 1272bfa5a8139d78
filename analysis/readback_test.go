package analysis_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/lockprobe/lockprobe/analysis/fixture"
	"github.com/lockprobe/lockprobe/tracefile"
)

// TestTraceFileRoundTrip writes every golden fixture's records as a trace file, and as OTLP JSON
// lines, and reads them back: the spans are those the records merge into in memory (the live
// controller's path), field for field. The fixtures live here, so the test of the file does too.
func TestTraceFileRoundTrip(t *testing.T) {
	eachFixture(t, func(t *testing.T, _ string, ar *txtar.Archive) {
		fx, err := fixture.Parse(section(ar, "trace"))
		if err != nil {
			t.Fatal(err)
		}
		want := fx.Trace()
		file := writeFixture(t, fx)
		got, err := tracefile.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		same(t, "trace file", got, want)
		var js bytes.Buffer
		for _, r := range fx.Requests {
			l, err := tracefile.MarshalJSON(r)
			if err != nil {
				t.Fatal(err)
			}
			js.Write(append(l, '\n'))
		}
		legacy := filepath.Join(t.TempDir(), tracefile.LegacyFileName)
		if err := os.WriteFile(legacy, js.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err = tracefile.Open(legacy)
		if err != nil {
			t.Fatal(err)
		}
		same(t, "JSON lines", got, want)
	})
}

func same(t *testing.T, what string, got, want *tracefile.Trace) {
	t.Helper()
	if len(got.Spans) != len(want.Spans) || got.Requests != want.Requests || got.Truncated {
		t.Fatalf("%s: %d spans of %d requests (truncated %v), want %d of %d", what, len(got.Spans), got.Requests, got.Truncated,
			len(want.Spans), want.Requests)
	}
	for i := range got.Spans {
		if !reflect.DeepEqual(got.Spans[i], want.Spans[i]) {
			t.Errorf("%s: span %d\n%+v\nwant\n%+v", what, i, *got.Spans[i], *want.Spans[i])
		}
	}
}
