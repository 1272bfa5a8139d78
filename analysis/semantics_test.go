package analysis_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/lockprobe/lockprobe/analysis"
)

// TestSemanticsFromFacts: the analysis reads the file system's lock semantics off the lockers'
// facts, and with them decides conflicts and owners.
func TestSemanticsFromFacts(t *testing.T) {
	for _, tc := range []struct {
		fixture           string
		fs                string
		shared, nodeLocal bool
	}{
		{"lustre-flock-blocks-posix", "lustre -o flock", true, false},
		{"localflock-exclusion", "lustre -o localflock", false, true},
		{"lost-wakeup", "local", false, false},
	} {
		res := fixtureResult(t, tc.fixture)
		if s := res.Semantics; s.FS != tc.fs || s.SharedKinds != tc.shared || s.NodeLocal != tc.nodeLocal {
			t.Errorf("%s: semantics %+v, want fs %q shared %v node-local %v", tc.fixture, s, tc.fs, tc.shared, tc.nodeLocal)
		}
	}
	res := fixtureResult(t, "localflock-exclusion")
	if len(res.Findings) == 0 || res.Findings[0].Cause != "mount-option" {
		t.Errorf("localflock: findings %+v, want an exclusion finding caused by the mount option", res.Findings)
	}
}

// TestOwnerBySharedPID: two lockers on two nodes share pid 1; the owner F_GETLK names by pid 1 is
// the one that held the lock asked about, not the asker's node's locker with that pid.
func TestOwnerBySharedPID(t *testing.T) {
	res := fixtureResult(t, "same-pid-two-nodes")
	for _, a := range res.Attempts {
		if a.Locker != 0 {
			continue
		}
		if len(a.Conflicts) != 1 || a.Conflicts[0].Owner.Locker != 1 || a.Conflicts[0].Owner.Node != "n1" {
			t.Fatalf("locker 0's conflict owners %+v: want locker 1 on n1", a.Conflicts)
		}
		return
	}
	t.Fatal("no attempt of locker 0")
}

func fixtureResult(t *testing.T, name string) *analysis.Result {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".txtar"))
	if err != nil {
		t.Fatal(err)
	}
	res, _ := analyzeFixture(t, section(txtar.Parse(b), "trace"))
	return res
}
