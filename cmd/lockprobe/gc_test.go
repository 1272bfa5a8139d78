//go:build !lockeronly

package main

import (
	"runtime/debug"
	"testing"
)

// TestControllerGC: the run's collector gets its GOGC and a memory limit of half the RAM, unless
// the user set GOGC or GOMEMLIMIT.
func TestControllerGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	controllerGC()
	if got := debug.SetGCPercent(100); got != controllerGCPercent {
		t.Errorf("GOGC %d, want %d", got, controllerGCPercent)
	}
	if limit := debug.SetMemoryLimit(-1); limit <= 0 || limit == 1<<63-1 {
		t.Errorf("memory limit %d, want half the RAM", limit)
	}
	debug.SetMemoryLimit(1<<63 - 1)
	t.Setenv("GOGC", "50")
	controllerGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set: GOGC %d, want it left alone (100)", got)
	}
}
