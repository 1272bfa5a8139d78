package reports

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/analysis/fixture"
)

// fixtureDir holds the analysis package's golden traces; the reports render the same runs.
const fixtureDir = "../analysis/testdata"

// fixtureNames lists the analysis fixtures.
func fixtureNames(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "*.txtar"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no analysis fixtures in %s: %v", fixtureDir, err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = strings.TrimSuffix(filepath.Base(p), ".txtar")
	}
	return names
}

// fixtureResult analyses one fixture of analysis/testdata.
func fixtureResult(t testing.TB, name string) *analysis.Result {
	t.Helper()
	ar, err := txtar.ParseFile(filepath.Join(fixtureDir, name+".txtar"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ar.Files {
		if f.Name == "trace" {
			return resultOf(t, string(f.Data))
		}
	}
	t.Fatalf("%s: no trace section", name)
	return nil
}

// resultOf analyses a trace written in the fixture language.
func resultOf(t testing.TB, src string) *analysis.Result {
	t.Helper()
	fx, err := fixture.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return analysis.Analyze(fx.Trace(), analysis.Options{})
}

// bigTrace writes a fixture run of n lockers making perLocker read/write attempts each on one
// file, all contending, ending in an upgrade deadlock of the first two lockers: the scale the
// issue asks the report to stay small at (100 lockers, 10^4 attempts).
func bigTrace(n, perLocker int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "run scenario=big procs=%d timeout=600s poll=100ms kind=posix node=ctl command=\"lockprobe run -procs %d\"\n", n, n)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "locker L%d node=c%02d pid=%d unc=50us fs=lustre mount=/mnt/lustre lockopts=flock lustre=2.15.4\n", i, i%16, 4000+i)
	}
	// Each locker takes its turn in a round robin: it asks 40 turns ahead, waits, holds for half a
	// turn and idles until its next request, so every row has a hundred separate wait bars: the
	// worst case for the timeline's size.
	const slot = 2_000_000 // ns per turn
	t := int64(0)
	seq := 0
	for round := 0; round < perLocker; round++ {
		for i := 0; i < n; i++ {
			mode := "write"
			if (round+i)%3 == 0 {
				mode = "read"
			}
			a := fmt.Sprintf("a%d", seq)
			h := fmt.Sprintf("h%d", seq)
			req := t - 40*slot
			if req < 0 {
				req = 0
			}
			fmt.Fprintf(&b, "@%dns L%d acquire %s mode=%s range=0:EOF cmd=\"%s 0\"\n", req, i, a, mode, mode)
			if seq%7 == 0 && req < t {
				fmt.Fprintf(&b, "@%dns L%d conflict %s owner=L%d mode=write range=0:EOF\n", req+1000, i, a, (i+n-1)%n)
			}
			fmt.Fprintf(&b, "@%dns L%d grant %s %s\n", t, i, a, h)
			fmt.Fprintf(&b, "@%dns L%d release %s\n", t+slot/2, i, h)
			t += slot
			seq++
		}
	}
	// The end: lockers 0 and 1 hold read locks and both upgrade.
	fmt.Fprintf(&b, "@%dns L0 acquire z0 mode=read\n@%dns L0 grant z0 y0\n", t, t+1000)
	fmt.Fprintf(&b, "@%dns L1 acquire z1 mode=read\n@%dns L1 grant z1 y1\n", t+2000, t+3000)
	fmt.Fprintf(&b, "@%dns L0 acquire z2 mode=write\n@%dns L1 acquire z3 mode=write\n", t+10_000_000, t+10_000_100)
	fmt.Fprintf(&b, "@%dns L0 conflict z2 owner=L1 mode=read\n@%dns L1 conflict z3 owner=L0 mode=read\n", t+20_000_000, t+20_000_000)
	fmt.Fprintf(&b, "@%dns C end reason=hang\n", t+200_000_000)
	return b.String()
}

// writeOut saves a rendered file for a person to look at when LOCKPROBE_REPORT_OUT is set.
func writeOut(t testing.TB, name string, data []byte) {
	dir := os.Getenv("LOCKPROBE_REPORT_OUT")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
