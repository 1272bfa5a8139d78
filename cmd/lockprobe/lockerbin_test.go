package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLockerBeside: run starts this host's lockers from the locker build beside it only when
// that build says it is this version; otherwise (none there, another version, one that does
// not run) from lockprobe itself.
func TestLockerBeside(t *testing.T) {
	tests := []struct {
		name   string
		script string // the lockprobe-locker put beside; "" for none
		light  bool
	}{
		{"none", "", false},
		{"same version", "#!/bin/sh\necho '" + versionLine() + "'\n", true},
		{"other version", "#!/bin/sh\necho 'lockprobe v0.0.0-other'\n", false},
		{"fails", "#!/bin/sh\nexit 3\n", false},
		{"says more", "#!/bin/sh\necho '" + versionLine() + " extra'\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "lockprobe")
			light := filepath.Join(dir, lockerBinary)
			if tt.script != "" {
				if err := os.WriteFile(light, []byte(tt.script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			want := self
			if tt.light {
				want = light
			}
			if got := lockerBeside(self); got != want {
				t.Errorf("lockerBeside = %s, want %s", got, want)
			}
		})
	}
}
