package proto

import (
	"github.com/lockprobe/lockprobe/semconv"
	"testing"
	"time"
)

func TestCommandString(t *testing.T) {
	abs := time.Date(2025, 3, 1, 12, 0, 0, 500, time.UTC)
	tests := []struct {
		c    Command
		want string
	}{
		{Command{Op: OpFile, Path: "/mnt/shared/f"}, "file@/mnt/shared/f"},
		{Command{Op: OpFile, Path: "/mnt/f", FD: 2}, "file@/mnt/f fd=2"},
		{Command{Op: OpLock, Mode: semconv.ModeWrite}, "write"},
		{Command{Op: OpLock, Mode: semconv.ModeRead, Kind: semconv.KindOFD, Style: semconv.StyleTry}, "read kind=ofd style=try"},
		{Command{Op: OpLock, Mode: semconv.ModeWrite, Style: semconv.StylePoll, Tries: 5, Interval: 10 * time.Millisecond}, "write style=poll tries=5 interval=10ms"},
		{Command{Op: OpLock, Mode: semconv.ModeWrite, Start: 10, Len: 0}, "write range=10:0"},
		{Command{Op: OpLock, Mode: semconv.ModeWrite, Start: 0, Len: 7}, "write range=0:7"},
		{Command{Op: OpLock, Mode: semconv.ModeWrite, HasAt: true, After: 1500 * time.Millisecond}, "write@+1.5s"},
		{Command{Op: OpLock, Mode: semconv.ModeWrite, HasAt: true}, "write@+0s"},
		{Command{Op: OpLock, Mode: semconv.ModeRead, HasAt: true, After: time.Second, Abs: abs}, "read@2025-03-01T12:00:00.0000005Z"},
		{Command{Op: OpLock, Mode: semconv.ModeRead, Abs: abs}, "read"}, // Abs without HasAt is not a schedule
		{Command{Op: OpLock, Mode: semconv.ModeWrite, Kind: semconv.KindFlock, Style: semconv.StyleWait, Tries: 1, Interval: time.Second, Start: 1, Len: 2, FD: 3, HasAt: true, After: time.Minute},
			"write@+1m0s kind=flock style=wait tries=1 interval=1s range=1:2 fd=3"},
		{Command{Op: OpSleep, Duration: 250 * time.Millisecond}, "sleep 250ms"},
		{Command{Op: OpSleep}, "sleep 0s"},
		{Command{Op: OpGetlk, Mode: semconv.ModeRead, Start: 5, Len: 5}, "getlk mode=read range=5:5"},
		{Command{Op: OpGetlk, Mode: semconv.ModeWrite, HasAt: true, After: time.Millisecond}, "getlk@+1ms mode=write"},
		{Command{Op: OpRelease}, "release"},
		{Command{Op: OpRelease, Start: 4, Len: 4, FD: 1}, "release range=4:4 fd=1"},
		{Command{Op: OpReleaseIf}, "releaseif"},
		{Command{Op: OpClose, FD: 63}, "close fd=63"},
		{Command{Op: OpStop}, "stop"},
		{Command{Op: 0}, "op(0)"},
		{Command{Op: 200}, "op(200)"},
	}
	for _, tc := range tests {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{OpFile: "file", OpLock: "lock", OpRelease: "release", OpReleaseIf: "releaseif",
		OpSleep: "sleep", OpGetlk: "getlk", OpClose: "close", OpStop: "stop", 0: "op(0)", OpStop + 1: "op(9)", 255: "op(255)"} {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", uint8(op), got, want)
		}
	}
}

func TestCommandValidateAccepts(t *testing.T) {
	for _, c := range []Command{
		{Op: OpFile, Path: "f"},
		{Op: OpLock, Mode: semconv.ModeRead}, {Op: OpLock, Mode: semconv.ModeWrite, Kind: semconv.KindPOSIX, Style: semconv.StyleWait},
		{Op: OpLock, Mode: semconv.ModeWrite, Kind: semconv.KindOFD, Style: semconv.StyleTry}, {Op: OpLock, Mode: semconv.ModeWrite, Kind: semconv.KindFlock, Style: semconv.StylePoll, Tries: 3},
		{Op: OpGetlk, Mode: semconv.ModeWrite}, {Op: OpRelease}, {Op: OpReleaseIf}, {Op: OpSleep, Duration: time.Second},
		{Op: OpClose, FD: 0}, {Op: OpClose, FD: 63}, {Op: OpStop},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
