package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// profileEnv names a folder where every lockprobe process writes a CPU profile of its life:
// the controller of a run, each locker and observer it starts (they inherit the environment),
// and analyze. The benchmarks' findings (BENCHMARKS.md) come from such profiles.
const profileEnv = "LOCKPROBE_CPUPROFILE"

// startProfile starts the CPU profile of this process when LOCKPROBE_CPUPROFILE is set, into
// DIR/COMMAND-PID.pprof, and returns what stops it.
func startProfile(command string, stderr io.Writer) func() {
	dir := os.Getenv(profileEnv)
	if dir == "" {
		return func() {}
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", command, os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "lockprobe: %s: %v\n", profileEnv, err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(stderr, "lockprobe: %s: %v\n", profileEnv, err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
