package control

import "testing"

// TestMemberLife: a member moves only forward along its life; what does not fit (a ready
// before the welcome, an idle after the goodbye) changes nothing, and exit ends every life.
func TestMemberLife(t *testing.T) {
	steps := []struct {
		to   phase
		ok   bool
		want phase
	}{
		{phaseReady, false, phasePlanned},
		{phaseStarted, true, phaseStarted},
		{phaseRunning, false, phaseStarted},
		{phaseWelcomed, true, phaseWelcomed},
		{phaseWelcomed, false, phaseWelcomed},
		{phaseReady, true, phaseReady},
		{phaseRunning, true, phaseRunning},
		{phaseIdle, true, phaseIdle},
		{phaseRunning, false, phaseIdle},
		{phaseLeft, true, phaseLeft},
		{phaseIdle, false, phaseLeft},
		{phaseExited, true, phaseExited},
		{phaseExited, false, phaseExited},
		{phaseWelcomed, false, phaseExited},
	}
	m := &member{}
	for i, s := range steps {
		if ok := m.to(s.to); ok != s.ok || m.phase != s.want {
			t.Errorf("step %d: to(%s) = %v, now %s; want %v, %s", i, s.to, ok, m.phase, s.ok, s.want)
		}
	}
}

// TestMemberQueries: what the run asks of a member in each phase, for one started here and
// one on another node.
func TestMemberQueries(t *testing.T) {
	type q struct{ connected, done, gone bool }
	for _, c := range []struct {
		m    member
		want q
	}{
		{member{phase: phasePlanned}, q{false, false, true}}, // never started: nothing runs
		{member{phase: phaseStarted, proc: child{}}, q{false, false, false}},
		{member{phase: phaseRunning, proc: child{}}, q{true, false, false}},
		{member{phase: phaseIdle, proc: child{}}, q{true, true, false}},
		{member{phase: phaseLeft, proc: child{}}, q{false, true, false}}, // its process is still ending
		{member{phase: phaseExited, proc: child{}}, q{false, true, true}},
		{member{phase: phasePlanned, remote: true}, q{false, false, true}},
		{member{phase: phaseRunning, remote: true}, q{true, false, false}},
		{member{phase: phaseLeft, remote: true}, q{false, true, true}}, // no process here: its goodbye is its end
	} {
		if got := (q{c.m.connected(), c.m.done(), c.m.gone()}); got != c.want {
			t.Errorf("%s (remote %v): connected, done, gone = %v, want %v", c.m.phase, c.m.remote, got, c.want)
		}
	}
}

func TestMemberUnsent(t *testing.T) {
	killed := member{phase: phaseRunning, backlog: 5}
	killed.exitPhase = killed.phase
	killed.to(phaseExited)
	left := member{phase: phaseLeft, backlog: 5}
	left.exitPhase = left.phase
	left.to(phaseExited)
	if killed.unsent() != 5 || killed.saidBye() {
		t.Errorf("killed while running: unsent %d, bye %v; want 5, false", killed.unsent(), killed.saidBye())
	}
	if left.unsent() != 0 || !left.saidBye() {
		t.Errorf("exited after its goodbye: unsent %d, bye %v; want 0, true", left.unsent(), left.saidBye())
	}
}
