package main

import (
	"runtime/debug"
	"testing"
)

// TestStampedVersion: a plain go build names itself by what it recorded, never "dev" when the
// VCS stamp is there.
func TestStampedVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "dev"},
		{"a tagged module", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"a pseudo-version from the stamp", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201225604-a8ce05743fa4"},
			Settings: vcs("a8ce05743fa456d65bf1258df42c28d48fdb5d32", "false")}, "v0.0.0-20261201225604-a8ce05743fa4"},
		{"devel with a clean revision", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
			Settings: vcs("a8ce05743fa456d65bf1258df42c28d48fdb5d32", "false")}, "a8ce05743fa4"},
		{"devel with a dirty tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
			Settings: vcs("a8ce05743fa456d65bf1258df42c28d48fdb5d32", "true")}, "a8ce05743fa4-dirty"},
		{"devel without a stamp (-buildvcs=false)", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	}
	for _, tt := range tests {
		if got := stampedVersion(tt.info); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
