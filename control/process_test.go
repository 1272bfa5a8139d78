package control

import (
	"slices"
	"testing"

	"github.com/lockprobe/lockprobe/proto"
)

// TestSpecEnvGOMAXPROCS: a member gets one P for start-up, and the word to take the runtime's
// default later, only when the controller's environment sets no GOMAXPROCS of the user's.
func TestSpecEnvGOMAXPROCS(t *testing.T) {
	s := Spec{Token: "t"}
	for _, c := range []struct {
		environ []string
		want    []string
	}{
		{[]string{"PATH=/bin"}, []string{"LOCKPROBE_TOKEN=t", "GOMAXPROCS=1", proto.EnvStartGOMAXPROCS + "=1"}},
		{[]string{"PATH=/bin", "GOMAXPROCS=3"}, []string{"LOCKPROBE_TOKEN=t"}},
		{[]string{"XGOMAXPROCS=3"}, []string{"LOCKPROBE_TOKEN=t", "GOMAXPROCS=1", proto.EnvStartGOMAXPROCS + "=1"}},
	} {
		if got := s.Env(c.environ); !slices.Equal(got, c.want) {
			t.Errorf("Env(%q) = %q, want %q", c.environ, got, c.want)
		}
	}
}
