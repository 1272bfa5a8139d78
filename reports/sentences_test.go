package reports

import (
	"strings"
	"testing"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// TestProgramSentences pins the words for a real program's processes, which the analysis
// fixtures (lockers only) do not reach: processes are named by pid and command line, an idle
// holder says what the snapshot saw it do, a refusal after polls says the stall's cost, and a
// pid that is no process of the answering node says where to look.
func TestProgramSentences(t *testing.T) {
	prog := func(id, pid int64, cmd string) analysis.Locker {
		return analysis.Locker{ID: id, Role: analysis.RoleProgram, Node: "c01", PID: pid, Command: cmd}
	}
	n := newNamer([]analysis.Locker{
		prog(0, 4711, "python3 race.py T"),
		prog(1, 4712, "python3 "+strings.Repeat("x", 80)),
		{ID: 2, Role: "locker", Node: "c02", PID: 300},
	})
	lock := analysis.Lock{Request: lockmodel.Request{Kind: semconv.KindPOSIX, Mode: semconv.ModeWrite}, File: "T/table.lock", Path: "/data/T/table.lock"}
	tests := []struct {
		name string
		f    analysis.Finding
		want string
	}{
		{"idle holder", analysis.Finding{Lock: lock, Detail: analysis.IdleHolder{Waiter: 0, Waited: 12e9, Holder: 2, Known: true,
			Doing: analysis.InState{State: "S", Wchan: "hrtimer_nanosleep"}}},
			"pid 4711 (python3 race.py T) on node c01 has waited 12.0 s for a posix write lock on [0, EOF) of /data/T/table.lock: the chain of waits ends at locker 2 (pid 300 on node c02), which holds the lock and waits for no lock — it is sleeping (S) in hrtimer_nanosleep, in no lock call"},
		{"idle holder unseen", analysis.Finding{Lock: lock, Detail: analysis.IdleHolder{Waiter: 1, Waited: 1e9, Holder: 0}},
			"pid 4712 (python3 " + strings.Repeat("x", 49) + "...) on node c01 has waited 1.0 s for a posix write lock on [0, EOF) of /data/T/table.lock: the chain of waits ends at pid 4711 (python3 race.py T) on node c01, which holds the lock and waits for no lock — it is doing something no snapshot shows"},
		{"refused after polls", analysis.Finding{Lock: lock, Duration: 29.5e9, Detail: analysis.Refusal{Requester: 0, With: []int64{1},
			Polled: &analysis.PollFailed{Tries: 29, Errno: "EAGAIN", Took: 28.9e9}}},
			"pid 4711 (python3 race.py T) on node c01 asked for a posix write lock on [0, EOF) of /data/T/table.lock and the file system refused it with EDEADLK after 29 tries over 28.9 s and a wait: the stall cost 29.5 s: it detected the deadlock with locker 1 and broke it — the healthy outcome of a cycle"},
		{"remote pid", analysis.Finding{Lock: lock, Detail: analysis.ForeignOwner{Waiter: 2, Waited: 6e9, Remote: true,
			Owner: analysis.Party{Locker: -1, Class: semconv.OwnerForeign, PID: 900, Node: "c02"}}},
			"locker 2 (pid 300 on node c02) has waited 6.0 s for a posix write lock on [0, EOF) of /data/T/table.lock held by foreign pid 900, which is no locker of this run; pid 900 is no process of node c02: on a file system shared across nodes its holder runs on another node — run `lockprobe who /data/T/table.lock` on the nodes that mount it"},
		{"program cycle", analysis.Finding{Lockers: []int64{0, 1}, Lock: lock, Duration: 3e9, Detail: analysis.Cycle{Files: 1, Members: []analysis.Member{
			{Locker: 0, Want: lock, Owners: []analysis.Party{{Locker: 1}}}, {Locker: 1, Want: lock, Owners: []analysis.Party{{Locker: 0}}}}}},
			"deadlock: processes 4711, 4712 wait for each other in a cycle over one file — pid 4711 (python3 race.py T) on node c01 wants a posix write lock on [0, EOF) of /data/T/table.lock held by pid 4712; pid 4712 (python3 " + strings.Repeat("x", 49) + "...) on node c01 wants a posix write lock on [0, EOF) of /data/T/table.lock held by pid 4711; the cycle has stood for 3.0 s and nothing broke it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := n.summary(&tt.f); got != tt.want {
				t.Errorf("summary\n got %s\nwant %s", got, tt.want)
			}
		})
	}
	ev := analysis.Evidence{By: analysis.Party{Locker: 0}, Fact: analysis.InState{State: "T", Stack: "do_signal_stop < get_signal"}}
	if got, want := n.party(ev.By)+": "+n.evidence(ev), "pid 4711: process state: stopped (T), in no lock call; kernel stack do_signal_stop < get_signal"; got != want {
		t.Errorf("evidence\n got %s\nwant %s", got, want)
	}
	if got, want := n.nodeLabel(analysis.GraphNode{Locker: 0, PID: 4711, Node: "c01"}), "pid 4711 on c01\npython3 race.py T"; got != want {
		t.Errorf("node label %q, want %q", got, want)
	}
}

// TestHealthyOverAPartialTrace: a healthy verdict says which evidence never arrived.
func TestHealthyOverAPartialTrace(t *testing.T) {
	const s = int64(1e9)
	tests := []struct {
		name string
		res  analysis.Result
		want string // "" : the plain healthy sentence
	}{
		{"complete", analysis.Result{Lockers: []analysis.Locker{{ID: 0, Exited: true, Goodbye: true}}}, ""},
		{"healed silence", analysis.Result{Start: s, Silences: []analysis.Silence{{Node: "n1", From: 3 * s, To: 5 * s, Healed: true}}}, ""},
		{"node gone", analysis.Result{Start: s, Silences: []analysis.Silence{{Node: "n1", From: 3 * s, To: 9 * s}}},
			"; but node n1 was never heard again after 2.0 s: the verdict rests only on what arrived"},
		{"two without goodbye, lost", analysis.Result{MessagesLost: 3, Lockers: []analysis.Locker{{ID: 0, Exited: true}, {ID: 1, Exited: true}, {ID: 2}}},
			"; but 2 lockers ended without their goodbye and 3 messages were lost: the verdict rests only on what arrived"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := Summary(&tt.res), healthySummary+tt.want; got != want {
				t.Errorf("Summary = %q\nwant      %q", got, want)
			}
		})
	}
}

// TestFindingOverAPartialTrace: a finding read from a trace with records missing says so, and
// one from a whole trace does not: a release that never arrived reads as a hold that never
// ended (a 1000-locker run whose messages were lost was called a stale holder).
func TestFindingOverAPartialTrace(t *testing.T) {
	f := analysis.Finding{Detail: analysis.NobodyHolds{Waiter: 0, Waited: 2e9}}
	lockers := []analysis.Locker{{ID: 0, Exited: true, Goodbye: true}}
	whole := analysis.Result{Lockers: lockers, Findings: []analysis.Finding{f}}
	plain := Summary(&whole)
	if strings.Contains(plain, "but") {
		t.Fatalf("a finding over a whole trace has a caveat: %s", plain)
	}
	partial := whole
	partial.MessagesLost = 7
	partial.Lockers = []analysis.Locker{{ID: 0, Exited: true}}
	want := plain + "; but 1 locker ended without its goodbye and 7 messages were lost: this finding may rest on records that never arrived"
	if got := Summary(&partial); got != want {
		t.Errorf("Summary = %q\nwant      %q", got, want)
	}
}
