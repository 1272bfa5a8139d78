package main

import (
	"os"
	"runtime"
	"testing"

	"github.com/lockprobe/lockprobe/semconv"
)

// TestLockerGOMAXPROCS: a locker started on this host runs its queue with the GOMAXPROCS the
// user set in lockprobe's environment, and with the runtime's default when none was set (it
// starts with one P either way only when the user set none; control's Spec.Env).
func TestLockerGOMAXPROCS(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	runtime.SetDefaultGOMAXPROCS() // this machine's default, as a locker's runtime computes it
	def := runtime.GOMAXPROCS(old)
	for _, c := range []struct {
		name string
		env  string // "" leaves GOMAXPROCS unset
		want int64
	}{
		{"user", "3", 3},
		{"default", "", int64(def)},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", c.env) // restored after the test
			if c.env == "" {
				os.Unsetenv("GOMAXPROCS")
			}
			res := runScenario(t, `procs 2
all: file@{file}
all: write@+0s style=try
all: stop
`)
			if res.code != 0 {
				t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
			}
			lockers := spansNamed(res.trace, semconv.SpanLocker)
			if len(lockers) != 2 {
				t.Fatalf("%d locker spans, want 2", len(lockers))
			}
			for _, s := range lockers {
				if got := s.Attrs.IntOr(semconv.GOMAXPROCS, -1); got != c.want {
					t.Errorf("locker %d ran its queue with GOMAXPROCS %d, want %d", s.Attrs.IntOr(semconv.LockerID, -1), got, c.want)
				}
			}
		})
	}
}
