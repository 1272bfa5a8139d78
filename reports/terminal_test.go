package reports

import (
	"fmt"
	"strings"
	"testing"
)

// TestSomeOf: a long list of lockers is cut to the terminal's cap and says how many it left out.
func TestSomeOf(t *testing.T) {
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("locker %d", i)
		}
		return out
	}
	if got, want := someOf(names(2)), "locker 0, locker 1"; got != want {
		t.Errorf("someOf(2) = %q, want %q", got, want)
	}
	if got, want := someOf(names(maxTerminalRows)), strings.Join(names(maxTerminalRows), ", "); got != want {
		t.Errorf("someOf(cap) = %q, want %q", got, want)
	}
	got := someOf(names(1000))
	want := strings.Join(names(maxTerminalRows), ", ") + fmt.Sprintf(" … and %d more in the report", 1000-maxTerminalRows)
	if got != want {
		t.Errorf("someOf(1000) = %q, want %q", got, want)
	}
}
