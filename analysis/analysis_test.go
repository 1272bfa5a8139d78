package analysis_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/analysis/fixture"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

func loadFixture(t testing.TB, name string) *fixture.Fixture {
	t.Helper()
	ar, err := txtar.ParseFile("testdata/" + name + ".txtar")
	if err != nil {
		t.Fatal(err)
	}
	fx, err := fixture.Parse(section(ar, "trace"))
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

// live feeds the fixture's records written up to now through a Merger, as the controller does,
// and checks at now.
func live(fx *fixture.Fixture, a *analysis.Analyzer, m *tracefile.Merger, from int, now int64) int {
	i := from
	for ; i < len(fx.Requests) && fx.Times[i] <= now; i++ {
		for _, s := range m.Add(fx.Requests[i].ResourceSpans) {
			a.Observe(s)
		}
	}
	return i
}

func TestCheckOnline(t *testing.T) {
	ms := func(d time.Duration) int64 { return fixture.Base + int64(d) }
	tests := []struct {
		fixture string
		at      []time.Duration // checks in order
		want    []string        // class of the first finding at each check, "" for none
		formed  time.Duration   // FormedAt of the last check's first finding
	}{
		{"deadlock-two-files", []time.Duration{1200 * time.Millisecond, 1550 * time.Millisecond, 1700 * time.Millisecond},
			[]string{"", "", analysis.ClassDeadlock}, 1500 * time.Millisecond},
		{"deadlock-upgrade", []time.Duration{1000 * time.Millisecond, 1300 * time.Millisecond},
			[]string{"", analysis.ClassDeadlock}, 1000100 * time.Microsecond},
		{"lost-wakeup", []time.Duration{5 * time.Second, 7200 * time.Millisecond},
			[]string{"", analysis.ClassLostWakeup}, 2100 * time.Millisecond},
		{"lost-callback", []time.Duration{3 * time.Second, 7 * time.Second},
			[]string{"", analysis.ClassLostCallback}, 1650 * time.Millisecond},
		{"long-hold", []time.Duration{9 * time.Second}, []string{""}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			fx := loadFixture(t, tt.fixture)
			a := analysis.New(analysis.Options{})
			m := tracefile.NewMerger()
			next := 0
			var last []analysis.Finding
			for i, at := range tt.at {
				next = live(fx, a, m, next, ms(at))
				last = a.Check(ms(at))
				got := ""
				if len(last) > 0 {
					got = last[0].Class
				}
				if got != tt.want[i] {
					t.Fatalf("check at %v: first finding %q, want %q (%+v)", at, got, tt.want[i], last)
				}
			}
			if tt.formed != 0 && last[0].FormedAt != ms(tt.formed) {
				t.Errorf("formed at %v, want %v", time.Duration(last[0].FormedAt-fixture.Base), tt.formed)
			}
		})
	}
}

// TestOnlineMatchesOffline: the verdict of a saved run is the one the live analysis reaches.
func TestOnlineMatchesOffline(t *testing.T) {
	for _, name := range []string{"deadlock-two-files", "stale-holder", "foreign-holder", "healthy", "lost-grant-stuck-watcher", "owner-by-tid"} {
		fx := loadFixture(t, name)
		a := analysis.New(analysis.Options{})
		m := tracefile.NewMerger()
		live(fx, a, m, 0, fx.End)
		online := a.Finalize(fx.End)
		offline := analysis.Analyze(fx.Trace(), analysis.Options{})
		if online.Verdict != offline.Verdict {
			t.Errorf("%s: live %+v, offline %+v", name, online.Verdict, offline.Verdict)
		}
	}
}

func TestValidate(t *testing.T) {
	good := loadFixture(t, "blocked-conversion").Trace()
	if errs := analysis.Validate(good); len(errs) != 0 {
		t.Fatalf("good trace: %v", errs)
	}
	bad := loadFixture(t, "healthy").Trace()
	for _, s := range bad.Spans {
		if s.Name == "lock.hold" {
			s.Attrs.Set("lock.acquire.id", "00000000000000ff")
			break
		}
	}
	for _, s := range bad.Spans {
		if s.Name == "lock.acquire" {
			s.Attrs.Set("lock.kind", "lockf")
			break
		}
	}
	bad.Spans = append(bad.Spans, bad.Spans[0])
	errs := analysis.Validate(bad)
	text := ""
	for _, e := range errs {
		text += e.Error() + "\n"
	}
	for _, want := range []string{"used twice", "no attempt", `lock.kind: kind "lockf" is not posix, ofd or flock`} {
		if !strings.Contains(text, want) {
			t.Errorf("Validate missed %q: %s", want, text)
		}
	}
}

func TestStats(t *testing.T) {
	res := analysis.Analyze(loadFixture(t, "healthy").Trace(), analysis.Options{})
	st := res.Stats
	if st.Attempts != 2 || st.Waits != 1 || st.Holds != 2 {
		t.Errorf("counts: %+v", st)
	}
	if w := st.WaitByMode[semconv.ModeWrite]; w.Count != 1 || w.Max != int64(990100*time.Microsecond) {
		t.Errorf("wait: %+v", w)
	}
	if st.HandOff.Count != 1 || st.HandOff.Max != int64(100*time.Microsecond) {
		t.Errorf("hand-off: %+v", st.HandOff)
	}
	up := analysis.Analyze(loadFixture(t, "deadlock-upgrade").Trace(), analysis.Options{})
	if f := up.Stats.Fire; len(f.Instants) != 2 || f.Instants[1].Spread != int64(300*time.Microsecond) || f.Instants[1].Count != 3 {
		t.Errorf("fire spread: %+v", f)
	}
	if len(res.Summaries) != 2 || res.Summaries[1].Waits != 1 || res.Summaries[1].LastCommand == "" {
		t.Errorf("summaries: %+v", res.Summaries)
	}
}

// TestAttemptWaited checks that Attempt.Waited marks exactly the attempts Stats.Waits counts.
func TestAttemptWaited(t *testing.T) {
	for _, name := range []string{"healthy", "deadlock-upgrade", "lost-grant-stuck-watcher", "stale-holder"} {
		res := analysis.Analyze(loadFixture(t, name).Trace(), analysis.Options{})
		waits := 0
		for _, a := range res.Attempts {
			if a.Waited {
				waits++
			}
			if (len(a.Conflicts) > 0 || a.Outcome != semconv.OutcomeGranted) && !a.Waited {
				t.Errorf("%s: attempt %s of locker %d (%s, %d conflicts) not marked waited", name, a.ID, a.Locker, a.Outcome, len(a.Conflicts))
			}
		}
		if waits != res.Stats.Waits || waits == 0 {
			t.Errorf("%s: %d attempts marked waited, stats count %d", name, waits, res.Stats.Waits)
		}
	}
	res := analysis.Analyze(loadFixture(t, "healthy").Trace(), analysis.Options{})
	if res.Attempts[0].Waited || !res.Attempts[1].Waited {
		t.Errorf("healthy: waited %v %v, want false true", res.Attempts[0].Waited, res.Attempts[1].Waited)
	}
}

func TestFixtureErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"@0s L0 acquire a1", "unknown process L0"},
		{"locker L0\n@0s L0 grant a9 h1", "no lock.acquire named"},
		{"locker L0\n@0s L0 acquire a1\n@1s L0 acquire a1", "used twice"},
		{"locker L0\n@x L0 acquire a1", "bad duration"},
		{"locker L0\n@0s L0 acquire a1 range=1", "bad range"},
		{"locker L0\n@0s L0 conflict a1 owner=L7", "no lock.acquire"},
		{"locker L0\n@0s L0 acquire a1\n@0s L0 conflict a1 owner=L7", "bad owner"},
		{"locker L0 cmd=\"open", "unterminated quote"},
		{"locker L0\n@0s C end\n@1s C end", "already ended"},
		{"observer L0", "observer is named O"},
	}
	for _, tt := range tests {
		_, err := fixture.Parse([]byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.src, err, tt.want)
		}
	}
}

// FuzzFixture: the fixture parser never panics, and whatever it accepts analyses without panic.
func FuzzFixture(f *testing.F) {
	f.Add([]byte("locker L0\n@0s L0 acquire a1\n@1s L0 grant a1 h1\n@2s C end"))
	f.Add([]byte("locker L0\nlocker L1\nobserver O0\n@0s L1 acquire a conflict\n@1s O0 observed owner=L1\n@1s L1 conflict a owner=self"))
	f.Fuzz(func(t *testing.T, src []byte) {
		fx, err := fixture.Parse(src)
		if err != nil {
			return
		}
		res := analysis.Analyze(fx.Trace(), analysis.Options{})
		if res.Verdict.Class == "" {
			t.Fatal("no verdict")
		}
	})
}

// TestStaleHolderNeedsFreshAnswer checks that a stale holder is reported only on an answer
// given after the holder's lock ended, from the waiter's watcher or an observer.
func TestStaleHolderNeedsFreshAnswer(t *testing.T) {
	const head = `run scenario=kill procs=2 timeout=20s poll=100ms kind=posix
locker L0 node=g1 pid=900
locker L1 node=g2 pid=901
observer O0 node=g2 pid=902
@0s      L0 acquire a1 mode=write range=0:EOF
@1ms     L0 grant a1 h1
@500ms   L1 acquire a2 mode=write range=0:EOF
`
	tests := []struct {
		name, lines string
		stale       bool
	}{
		{"answer before the exit only", "@600ms L1 conflict a2 owner=L0 mode=write range=0:EOF\n@3s C exit L0\n", false},
		{"first answer after the exit", "@3s C exit L0\n@3.2s L1 conflict a2 owner=L0 mode=write range=0:EOF\n", true},
		{"answer repeated after the exit", "@600ms L1 conflict a2 owner=L0 mode=write range=0:EOF\n@3s C exit L0\n@4s L1 conflict a2 owner=L0 mode=write range=0:EOF\n", true},
		{"observer after the exit", "@600ms L1 conflict a2 owner=L0 mode=write range=0:EOF\n@3s C exit L0\n@3.1s O0 observed owner=L0 mode=write range=0:EOF query=read\n", true},
		{"observer before the exit only", "@600ms L1 conflict a2 owner=L0 mode=write range=0:EOF\n@700ms O0 observed owner=L0 mode=write range=0:EOF\n@3s C exit L0\n", false},
	}
	for _, tt := range tests {
		fx, err := fixture.Parse([]byte(head + tt.lines + "@20s C end reason=timeout\n"))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		res := analysis.Analyze(fx.Trace(), analysis.Options{})
		stale := false
		for _, f := range res.Findings {
			stale = stale || f.Class == analysis.ClassStaleHolder
		}
		if stale != tt.stale {
			t.Errorf("%s: stale-holder %v, want %v (verdict %s)", tt.name, stale, tt.stale, res.Verdict.Class)
		}
	}
}

// TestWaitedAtTheFirstInstant: lockers that fire together each begin before any is granted, so
// no hold is open at their beginnings; one granted after another's hold, before its watcher
// looked, waited all the same. A hold that began only after an attempt's grant, a hold of the
// attempt's own locker and a shared hold beside a read do not make it wait.
func TestWaitedAtTheFirstInstant(t *testing.T) {
	const head = "run scenario=contend procs=3 timeout=30s poll=100ms kind=posix node=n0\n" +
		"locker L0 node=n0 pid=4711\nlocker L1 node=n0 pid=4712\nlocker L2 node=n0 pid=4713\n"
	tests := []struct {
		name, body string
		want       []bool // per attempt, in the order they began
	}{
		{"fired together", `@0s L0 acquire a1 mode=write range=0:EOF
@1us L1 acquire a2 mode=write range=0:EOF
@2us L2 acquire a3 mode=write range=0:EOF
@10us L0 grant a1 h1
@50us L0 release h1
@60us L2 grant a3 h3
@90us L2 release h3
@100us L1 grant a2 h2
@130us L1 release h2
@1s C end reason=done`, []bool{false, true, true}},
		{"one after another", `@0s L0 acquire a1 mode=write range=0:EOF
@10us L0 grant a1 h1
@50us L0 release h1
@1ms L1 acquire a2 mode=write range=0:EOF
@1010us L1 grant a2 h2
@1050us L1 release h2
@1s C end reason=done`, []bool{false, false}},
		{"readers together", `@0s L0 acquire a1 mode=read range=0:EOF
@1us L1 acquire a2 mode=read range=0:EOF
@10us L0 grant a1 h1
@20us L0 release h1
@30us L1 grant a2 h2
@40us L1 release h2
@1s C end reason=done`, []bool{false, false}},
	}
	for _, tt := range tests {
		fx, err := fixture.Parse([]byte(head + tt.body + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		res := analysis.Analyze(fx.Trace(), analysis.Options{})
		var got []bool
		for _, a := range res.Attempts {
			got = append(got, a.Waited)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: waited %v, want %v", tt.name, got, tt.want)
		}
		if n := strings.Count(fmt.Sprint(tt.want), "true"); res.Stats.Waits != n {
			t.Errorf("%s: stats count %d waits, want %d", tt.name, res.Stats.Waits, n)
		}
	}
}
