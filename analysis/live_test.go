package analysis

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/lockprobe/lockprobe/analysis/fixture"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// findingKeys reduces findings to what the live decision rests on.
func findingKeys(fs []Finding) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %v %v formed=%d", f.Class, f.Lockers, f.Cycle, f.FormedAt))
	}
	return out
}

// TestCheckSeesThePresent replays every golden fixture as the controller receives it and, at
// each record's instant and a settle time and a stuck time after it, compares Check (the model
// of the present alone) with the same detectors on the model of every span observed so far.
func TestCheckSeesThePresent(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var src []byte
			for _, f := range ar.Files {
				if f.Name == "trace" {
					src = f.Data
				}
			}
			fx, err := fixture.Parse(src)
			if err != nil {
				t.Fatal(err)
			}
			a := New(Options{})
			m := tracefile.NewMerger()
			for i, r := range fx.Requests {
				for _, s := range m.Add(r.ResourceSpans) {
					a.Observe(s)
				}
				if i+1 < len(fx.Requests) && fx.Times[i+1] == fx.Times[i] {
					continue // the controller reads a burst before it checks
				}
				for _, d := range []time.Duration{0, 150 * time.Millisecond, DefaultStuckAfter + time.Second} {
					now := fx.Times[i] + int64(d)
					if i+1 < len(fx.Requests) && now >= fx.Times[i+1] {
						continue
					}
					got, want := findingKeys(a.Check(now)), findingKeys(a.check(a.model(), now))
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("at %v after request %d: Check found\n%v\nthe whole model\n%v",
							time.Duration(now-fixture.Base), i, got, want)
					}
				}
			}
		})
	}
}

// TestCheckCostStaysFlat feeds a long contention (every attempt waits behind the last holder,
// as in storm) and checks after each round: the model Check builds holds the present and the
// settle time before it (100 ms: a hundred rounds here), as large late in the run as early.
func TestCheckCostStaysFlat(t *testing.T) {
	a := New(Options{})
	const base = int64(1_700_000_000_000_000_000)
	const lockers, rounds = 4, 3000
	id := 0
	span := func(name string, start, end int64, attrs ...tracefile.Attr) *tracefile.Span {
		id++
		return &tracefile.Span{TraceID: "t", SpanID: fmt.Sprintf("%016x", id), Name: name, Start: start, End: end,
			Attrs: attrs, Resource: tracefile.Attrs{}, Records: 1}
	}
	kv := func(k string, v any) tracefile.Attr { return tracefile.Attr{Key: k, Value: v} }
	a.Observe(span(semconv.SpanRun, base, 0, kv(semconv.RunPoll, int64(1e8))))
	for l := 0; l < lockers; l++ {
		a.Observe(span(semconv.SpanLocker, base, 0, kv(semconv.LockerID, int64(l)), kv(semconv.ProcessPID, int64(100+l))))
	}
	step := int64(time.Millisecond)
	var early, late int
	for r := 0; r < rounds; r++ {
		l := int64(r % lockers)
		begin, grant := base+int64(r)*step, base+int64(r+1)*step
		lock := []tracefile.Attr{kv(semconv.LockerID, l), kv(semconv.LockKind, semconv.KindPOSIX.String()),
			kv(semconv.LockMode, semconv.ModeWrite.String()), kv(semconv.FileLogical, "{file}")}
		at := span(semconv.SpanAcquire, begin, 0, append(lock, kv(semconv.LockOutcome, semconv.OutcomeWaiting.String()))...)
		a.Observe(at)
		at.End = grant
		at.Attrs.Set(semconv.LockOutcome, semconv.OutcomeGranted.String())
		a.Observe(at)
		h := span(semconv.SpanHold, grant, grant+step/2, append(lock, kv(semconv.LockHoldEnd, semconv.HoldRelease.String()))...)
		a.Observe(h)
		a.Check(grant + step/2)
		n := len(a.live.m.attempts) + len(a.live.m.holds)
		switch {
		case r >= 500 && r < 1000:
			early = max(early, n)
		case r >= rounds-500:
			late = max(late, n)
		}
	}
	if late > early+2 || late > 2*110 {
		t.Errorf("Check's model held up to %d attempts and holds after round 500, %d near round %d: it grows with the history", early, late, rounds)
	}
	if got := len(a.model().attempts); got != rounds {
		t.Errorf("the whole model has %d attempts, want %d", got, rounds)
	}
}
