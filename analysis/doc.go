// Package analysis turns the spans of a lockprobe trace into a verdict: it rebuilds the event model
// (lockers, attempts, holds, conflict observations, the observers' timelines, the end-of-run
// snapshot), builds the wait-for graph at any instant with gonum, runs the detectors of the
// signatures table (deadlock, lost wake-up, lost callback, stale or foreign holder, long hold,
// broken exclusion, implicit release) and computes statistics.
//
// Findings and their evidence are data (facts.go); the reports put them into words.
//
// It is pure and deterministic: no I/O, no clock, no goroutines, and every list it returns is
// sorted, so the same trace always gives the same Result. It is fed one merged span at a time
// (Analyzer.Observe) so that the live controller and `lockprobe analyze` share the same code:
//
//	a := analysis.New(analysis.Options{})
//	for _, s := range spans {
//		a.Observe(s)
//	}
//	findings := a.Check(now) // online: cycles and stuck waiters at instant now
//	res := a.Finalize(end)   // everything, at the end of the run
package analysis
