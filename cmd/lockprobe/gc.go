//go:build !lockeronly

package main

import (
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// controllerGCPercent is the controller's GOGC. It keeps every span of the run (the merger, the
// live analyzer) and takes in a storm's records at up to a few hundred thousand a second; at
// the default 100 its collector marked that growing heap every time it had doubled, about a
// sixth of its CPU per record, on the cores the lockers it measures share. At 400 the same
// records take ~25 % less CPU (BenchmarkSpanPipeline/live-path; bench/FINDINGS.md), for a peak
// heap up to five times the live one instead of two — bounded by controllerMemLimit.
const controllerGCPercent = 400

// controllerGC sets the run's garbage collector: controllerGCPercent, with a soft memory limit
// of half the machine's RAM so that a long run's heap is collected as before once it gets
// large. GOGC and GOMEMLIMIT, when set, are the user's choice and stay.
func controllerGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil || si.Totalram == 0 {
		return // no bound to set: keep the default
	}
	debug.SetMemoryLimit(int64(min(uint64(si.Totalram)*uint64(si.Unit)/2, 1<<62)))
	debug.SetGCPercent(controllerGCPercent)
}
