//go:build !lockeronly

package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// lockerBinary is the name of the locker build (main.go) beside lockprobe: `make build` puts it
// in bin/, the release tarball next to lockprobe.
const lockerBinary = "lockprobe-locker"

// lockerExecutable returns the binary this host's lockers start from: the locker build beside
// this executable when it is this same version, else this executable (which has the locker
// command too: a lockprobe installed alone still runs). A process of the locker build starts
// in about a third of the full binary's CPU time and page faults (BenchmarkStartup's floors
// show both), and a run of a thousand lockers on two cores pays that a thousand times. Members
// on other nodes run what the launcher shipped there, the full binary.
func lockerExecutable(log *slog.Logger) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	exe := lockerBeside(self)
	log.Debug("lockers start from", "path", exe)
	return exe, nil
}

// lockerBeside returns the locker build beside self when it is self's version, else self.
func lockerBeside(self string) string {
	if light := filepath.Join(filepath.Dir(self), lockerBinary); sameVersion(light) {
		return light
	}
	return self
}

// sameVersion says whether the binary at path is a lockprobe of this build's version: a
// locker build left from another version must not join this one's runs.
func sameVersion(path string) bool {
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	return err == nil && string(out) == versionLine()+"\n"
}
