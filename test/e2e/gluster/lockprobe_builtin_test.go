package gluster

import (
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/semconv"
)

// TestLockprobeUpgradeAcrossClients runs the built-in upgrade with one
// reader on each client. GlusterFS 10.3 drops a waiting upgrader's read
// lock (FINDINGS.md d), so the other upgrade is granted at once while the
// first upgrader, which never released its read lock, still counts as its
// holder under POSIX semantics: mutual exclusion is violated, and the
// finding must say that the read lock was dropped during a blocked
// conversion.
func TestLockprobeUpgradeAcrossClients(t *testing.T) {
	ctx := lpContext(t)
	for _, kind := range []string{semconv.KindPOSIX.String(), semconv.KindOFD.String()} {
		t.Run(kind, func(t *testing.T) {
			c := newLPCluster(ctx, t)
			r := c.start(t, "upgrade-"+kind, "upgrade.lock", "upgrade", "-procs", "2", "-lock", kind, "-timeout", "10s", "-stuck-after", "2s")
			r.wait(t, c)
			logFindings(t, r, analysis.Options{StuckAfter: 2 * time.Second})
			for _, s := range spans(r.trace, semconv.SpanAcquire) {
				t.Logf("attempt: %s", describe(s))
			}
			for _, s := range spans(r.trace, semconv.SpanHold) {
				t.Logf("hold: %s", describe(s))
			}
			r.expect(t, "exclusion-violated", 5)
			checkOwnersMapped(t, r.trace)
			if !strings.Contains(r.summary, "blocked conversion") {
				t.Errorf("the verdict's summary does not explain the lock dropped during a blocked conversion: %s", r.summary)
			}
			// Both upgrades were granted: no EDEADLK, no hang.
			writes := 0
			for _, a := range spans(r.trace, semconv.SpanAcquire) {
				if a.Attrs.Str(semconv.LockMode) == semconv.ModeWrite.String() {
					if o := a.Attrs.Str(semconv.LockOutcome); o == semconv.OutcomeGranted.String() {
						writes++
					} else {
						t.Errorf("upgrade of locker %d ended %s (%s)", lockerID(a), o, a.Attrs.Str(semconv.LockErrno))
					}
				}
			}
			if writes != 2 {
				t.Errorf("%d upgrades granted, want 2", writes)
			}
		})
	}
}

// TestLockprobeABBAAcrossClients runs the built-in abba with one locker on
// each client: the brick has no deadlock detection (FINDINGS.md e), so both
// wait for ever; lockprobe must find the cycle and end the run.
func TestLockprobeABBAAcrossClients(t *testing.T) {
	ctx := lpContext(t)
	for _, kind := range []string{semconv.KindPOSIX.String(), semconv.KindOFD.String()} {
		t.Run(kind, func(t *testing.T) {
			c := newLPCluster(ctx, t)
			r := c.start(t, "abba-"+kind, "abba.lock", "abba", "-lock", kind, "-timeout", "8s", "-stuck-after", "2s")
			r.wait(t, c)
			logSnapshot(t, r.trace)
			res := logFindings(t, r, analysis.Options{StuckAfter: 2 * time.Second})
			for _, s := range spans(r.trace, semconv.SpanAcquire) {
				t.Logf("attempt: %s", describe(s))
				for _, e := range s.Events {
					t.Logf("  %s", describeEvent(e))
				}
			}
			r.expect(t, "deadlock", 3)
			checkOwnersMapped(t, r.trace)
			for _, a := range spans(r.trace, semconv.SpanAcquire) {
				if a.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeDeadlock.String() {
					t.Errorf("locker %d got EDEADLK: GlusterFS was not expected to detect the cycle", lockerID(a))
				}
			}
			var cycle bool
			for _, f := range res.Findings {
				if f.Class == analysis.ClassDeadlock && len(f.Lockers) == 2 {
					cycle = true
				}
			}
			if !cycle {
				t.Errorf("no deadlock finding with both lockers in the cycle")
			}
			// The brick's own table shows the cycle: two ACTIVE, two BLOCKED.
			states := map[string]int{}
			for _, e := range events(r.trace, semconv.SpanSnapshot, "gluster.lock") {
				states[e.Attrs.Str("gluster.lock.state")]++
			}
			if states["ACTIVE"] != 2 || states["BLOCKED"] != 2 {
				t.Errorf("brick locks in the snapshot: %v, want 2 ACTIVE and 2 BLOCKED", states)
			}
		})
	}
}
