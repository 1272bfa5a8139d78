package analysis_test

import (
	"reflect"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/analysis/fixture"
	"github.com/lockprobe/lockprobe/tracefile"
)

// TestStreamedIsWhole analyses every golden fixture's trace file as `lockprobe analyze` does
// (tracefile.Stream into a Builder: attempts and holds let go as they complete) and as the
// whole file read first (Analyze): the results are the same, field for field.
func TestStreamedIsWhole(t *testing.T) {
	eachFixture(t, func(t *testing.T, _ string, ar *txtar.Archive) {
		fx, err := fixture.Parse(section(ar, "trace"))
		if err != nil {
			t.Fatal(err)
		}
		file := writeFixture(t, fx)
		whole, err := tracefile.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		want := analysis.Analyze(whole, analysis.Options{})
		b := analysis.NewBuilder(analysis.Options{})
		rest, err := tracefile.StreamFile(file, tracefile.StreamOptions{Release: analysis.Streamed, Done: b.Add})
		if err != nil {
			t.Fatal(err)
		}
		streamed := 0
		for _, s := range whole.Spans {
			if analysis.Streamed(s.Name) && !s.Open() {
				streamed++
			}
		}
		if rest.Streamed != streamed || len(rest.Spans) != len(whole.Spans)-streamed {
			t.Errorf("streamed %d spans and kept %d, want %d of %d streamed", rest.Streamed, len(rest.Spans), streamed, len(whole.Spans))
		}
		if got := b.Finish(rest); !reflect.DeepEqual(got, want) {
			t.Errorf("streamed analysis differs:\n%s\nwant\n%s", expectText(got), expectText(want))
		}
	})
}
