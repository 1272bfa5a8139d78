package simfs

import (
	"fmt"
	"strings"
)

// Mode is how a simfs shares locks between its nodes: Lustre's client mount options.
type Mode int

// The modes.
const (
	// ModeFlock: locks are global across nodes (Lustre -o flock); flock and fcntl locks conflict.
	ModeFlock Mode = iota
	// ModeLocalflock: each node's kernel arbitrates its own locks (Lustre -o localflock).
	ModeLocalflock
	// ModeNoflock: lock calls fail with ENOSYS (Lustre -o noflock).
	ModeNoflock
)

var modeNames = [...]string{ModeFlock: "flock", ModeLocalflock: "localflock", ModeNoflock: "noflock"}

func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return fmt.Sprintf("Mode(%d)", int(m))
	}
	return modeNames[m]
}

// ParseMode reads a mode's name.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if s == n {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown mode %q (want %s)", s, strings.Join(modeNames[:], ", "))
}

// Detect is how far the server follows waiters when it looks for a deadlock.
type Detect int

// The deadlock detectors.
const (
	// DetectFirst follows only the first conflicting lock of each waiter, as Lustre does
	// (LU-13991): a cycle through a waiter's second blocker is missed and hangs.
	DetectFirst Detect = iota
	// DetectAll follows every conflicting lock of each waiter: every cycle gets EDEADLK.
	DetectAll
	// DetectOff never answers EDEADLK.
	DetectOff
)

var detectNames = [...]string{DetectFirst: "first", DetectAll: "all", DetectOff: "off"}

func (d Detect) String() string {
	if d < 0 || int(d) >= len(detectNames) {
		return fmt.Sprintf("Detect(%d)", int(d))
	}
	return detectNames[d]
}

// ParseDetect reads a detector's name.
func ParseDetect(s string) (Detect, error) {
	for i, n := range detectNames {
		if s == n {
			return Detect(i), nil
		}
	}
	return 0, fmt.Errorf("unknown deadlock detection %q (want %s)", s, strings.Join(detectNames[:], ", "))
}
