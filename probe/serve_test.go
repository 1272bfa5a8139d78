package probe

import (
	"testing"
	"time"
)

// TestSilent: five beats without a message is silence, unless messages wait to be read.
func TestSilent(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name    string
		since   time.Duration
		waiting int
		want    bool
	}{
		{"just heard", 0, 0, false},
		{"four beats", 4 * time.Second, 0, false},
		{"five beats and a bit", 5*time.Second + time.Millisecond, 0, true},
		{"long silent, messages waiting", time.Minute, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := silent(t0, t0.Add(tt.since), time.Second, tt.waiting); got != tt.want {
				t.Errorf("silent after %v with %d waiting = %v, want %v", tt.since, tt.waiting, got, tt.want)
			}
		})
	}
}
