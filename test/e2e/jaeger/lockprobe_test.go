package jaeger

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// checkJaeger waits for the run's trace in Jaeger and checks its tree, its
// attributes and events, its processes and the verdict, and that a search
// by the verdict tag finds it.
func checkJaeger(t *testing.T, j *Jaeger, service string, run savedRun) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tr, err := waitTraceID(ctx, j, service, run.traceID, len(run.file.Spans))
	if err != nil {
		t.Fatal(err)
	}
	checkTree(t, tr, run)
	checkProcesses(t, tr, service)

	var found bool
	for !found {
		res, err := searchTags(ctx, j, service, map[string]string{semconv.Verdict: run.verdict})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			found = found || r.TraceID == run.traceID
		}
		if !found {
			select {
			case <-ctx.Done():
				t.Fatalf("tag search %s=%s of %q: %d traces, none is %s", semconv.Verdict, run.verdict, service, len(res), run.traceID)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func checkTree(t *testing.T, tr Trace, run savedRun) {
	t.Helper()
	if len(tr.Spans) != len(run.file.Spans) {
		t.Errorf("Jaeger has %d spans of trace %s, the trace file %d", len(tr.Spans), run.traceID, len(run.file.Spans))
	}
	byID := map[string]Span{}
	for _, s := range tr.Spans {
		if _, dup := byID[s.SpanID]; dup {
			t.Errorf("span id %s (%s) appears twice", s.SpanID, s.OperationName)
		}
		byID[s.SpanID] = s
		for _, w := range s.Warnings {
			t.Logf("Jaeger warning on %s %s: %s", s.OperationName, s.SpanID, w)
		}
	}
	for _, w := range tr.Warnings {
		t.Logf("Jaeger trace warning: %s", w)
	}
	for _, fs := range run.file.Spans {
		js, ok := byID[fs.SpanID]
		switch {
		case !ok:
			t.Errorf("span %s %s of the trace file is not in Jaeger", fs.Name, fs.SpanID)
		case js.OperationName != fs.Name || js.Parent() != fs.ParentID:
			t.Errorf("span %s: Jaeger has %s CHILD_OF %q, the file %s child of %q", fs.SpanID, js.OperationName, js.Parent(), fs.Name, fs.ParentID)
		case len(js.Logs) != len(fs.Events):
			t.Errorf("span %s %s: Jaeger has %d logs %v, the file %d events %v", fs.Name, fs.SpanID, len(js.Logs), logNames(js), len(fs.Events), eventNames(fs))
		}
	}

	root, ok := tr.Span(semconv.SpanRun)
	if !ok {
		t.Fatalf("no %s span", semconv.SpanRun)
	}
	if root.Parent() != "" {
		t.Errorf("root has parent %s", root.Parent())
	}
	if v, _ := Lookup(root.Tags, semconv.Verdict); v != run.verdict {
		t.Errorf("root tag %s = %v, want %s; tags %+v", semconv.Verdict, v, run.verdict, root.Tags)
	}
	if v, _ := Lookup(root.Tags, semconv.VerdictExit); v != json.Number("0") {
		t.Errorf("root tag %s = %v, want 0", semconv.VerdictExit, v)
	}
	if ev, ok := root.Event(semconv.EventVerdict); !ok {
		t.Errorf("root has no %s log; logs %+v", semconv.EventVerdict, root.Logs)
	} else if v, _ := Lookup(ev.Fields, semconv.Verdict); v != run.verdict {
		t.Errorf("verdict log field %s = %v, want %s", semconv.Verdict, v, run.verdict)
	}
	if v, _ := Lookup(root.Tags, semconv.RunEndReason); v != "done" {
		t.Errorf("root tag %s = %v, want done (the run's final record)", semconv.RunEndReason, v)
	}

	lockers := map[string]Span{} // by span id
	observers := 0
	for _, s := range tr.Spans {
		switch s.OperationName {
		case semconv.SpanLocker:
			lockers[s.SpanID] = s
		case semconv.SpanObserver:
			observers++
		default:
			continue
		}
		if s.Parent() != root.SpanID {
			t.Errorf("%s %s is CHILD_OF %q, not the root %s", s.OperationName, s.SpanID, s.Parent(), root.SpanID)
		}
	}
	if len(lockers) != procs || observers < 1 {
		t.Errorf("%d locker spans and %d observer spans, want %d and at least 1", len(lockers), observers, procs)
	}

	acquires, holds := map[string]int{}, map[string]int{}
	conflicts := 0
	for _, s := range tr.Spans {
		var count map[string]int
		switch s.OperationName {
		case semconv.SpanAcquire:
			count = acquires
			for _, l := range s.Logs {
				if v, _ := Lookup(l.Fields, "event"); v == semconv.EventConflict {
					conflicts++
				}
			}
		case semconv.SpanHold:
			count = holds
		default:
			continue
		}
		locker, ok := lockers[s.Parent()]
		if !ok {
			t.Errorf("%s %s is CHILD_OF %q, not a locker span", s.OperationName, s.SpanID, s.Parent())
			continue
		}
		count[s.Parent()]++
		want := []string{semconv.LockKind, semconv.LockMode, semconv.LockerID}
		if s.OperationName == semconv.SpanAcquire {
			want = append(want, semconv.LockOutcome)
		}
		for _, k := range want {
			if _, ok := Lookup(s.Tags, k); !ok {
				t.Errorf("%s %s lacks tag %s; tags %+v", s.OperationName, s.SpanID, k, s.Tags)
			}
		}
		if a, b := tagOf(s, semconv.LockerID), tagOf(locker, semconv.LockerID); a != b {
			t.Errorf("%s %s has locker.id %v under the span of locker %v", s.OperationName, s.SpanID, a, b)
		}
		if s.OperationName == semconv.SpanAcquire {
			if v := tagOf(s, semconv.LockOutcome); v != semconv.OutcomeGranted.String() {
				t.Errorf("acquire %s: lock.outcome %v, want granted", s.SpanID, v)
			}
		}
	}
	for id := range lockers {
		if acquires[id] != 1 || holds[id] != 1 {
			t.Errorf("locker span %s (locker.id %v) has %d acquires and %d holds beneath, want 1 and 1",
				id, tagOf(lockers[id], semconv.LockerID), acquires[id], holds[id])
		}
	}
	if conflicts == 0 {
		t.Errorf("no %s log on any lock.acquire span, though four lockers waited", semconv.EventConflict)
	}
	t.Logf("trace %s: %d spans, %d lockers, %d observers, %d lock.conflict logs, verdict %s",
		tr.TraceID, len(tr.Spans), len(lockers), observers, conflicts, run.verdict)
}

func logNames(s Span) []any {
	var out []any
	for _, l := range s.Logs {
		v, _ := Lookup(l.Fields, "event")
		out = append(out, v)
	}
	return out
}

func eventNames(s *tracefile.Span) []string {
	var out []string
	for _, e := range s.Events {
		out = append(out, e.Name)
	}
	return out
}

func tagOf(s Span, key string) any {
	v, _ := Lookup(s.Tags, key)
	return v
}

// checkProcesses checks that every span's process carries the service name
// and the resource's host.name and process.pid, and that each locker is its
// own process.
func checkProcesses(t *testing.T, tr Trace, service string) {
	t.Helper()
	lockerPIDs := map[any]bool{}
	for _, s := range tr.Spans {
		p, ok := tr.Processes[s.ProcessID]
		if !ok {
			t.Errorf("span %s %s: no process %q", s.OperationName, s.SpanID, s.ProcessID)
			continue
		}
		if p.ServiceName != service {
			t.Errorf("span %s: service %q, want %q", s.OperationName, p.ServiceName, service)
		}
		host, ok1 := Lookup(p.Tags, semconv.HostName)
		pid, ok2 := Lookup(p.Tags, semconv.ProcessPID)
		if !ok1 || !ok2 || host == "" {
			t.Errorf("span %s: process tags %+v lack host.name or process.pid", s.OperationName, p.Tags)
		}
		if s.OperationName == semconv.SpanLocker {
			lockerPIDs[pid] = true
		}
	}
	if len(lockerPIDs) != procs {
		t.Errorf("locker spans come from %d pids, want %d", len(lockerPIDs), procs)
	}
}

// TestRunToJaeger runs lockprobe with five contending lockers against one
// real Jaeger: forwarding live over OTLP/HTTP and gRPC, from the OTEL_*
// environment, and exporting a saved run afterwards. Each run must show up
// as the same tree as its trace file, with the verdict tag on the root.
func TestRunToJaeger(t *testing.T) {
	j := Start(t)
	tests := []struct {
		name    string
		service string
		// run makes a run that reaches Jaeger and returns its folder.
		run func(t *testing.T) string
	}{
		{name: "run-http", service: "lockprobe", run: func(t *testing.T) string {
			return runForwarded(t, nil, "-otlp", j.OTLPHTTP)
		}},
		{name: "run-grpc", service: "lockprobe", run: func(t *testing.T) string {
			return runForwarded(t, nil, "-otlp", j.OTLPGRPC)
		}},
		{name: "run-env", service: "lp-env", run: func(t *testing.T) string {
			return runForwarded(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + j.OTLPHTTP, "OTEL_SERVICE_NAME=lp-env"})
		}},
		{name: "export", service: "lockprobe", run: func(t *testing.T) string {
			res := runContend(t, nil)
			if strings.Contains(res.stdout, "OTLP") {
				t.Errorf("a run without -otlp mentions OTLP:\n%s", res.stdout)
			}
			exp := lockprobe(t, nil, "export", "-otlp", j.OTLPHTTP, res.out)
			t.Logf("export: %s%s", exp.stdout, exp.stderr)
			if exp.code != 0 || !strings.Contains(exp.stdout, " 0 not exported") {
				t.Fatalf("export exited %d\nstdout: %s\nstderr: %s", exp.code, exp.stdout, exp.stderr)
			}
			return res.out
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.run(t)
			checkJaeger(t, j, tt.service, readRun(t, out))
		})
	}
	t.Run("deadlock", func(t *testing.T) { checkDeadlock(t, j) })
}

// checkDeadlock runs two lockers into an OFD upgrade deadlock (which the
// kernel does not break) with export on: the attempts that never returned
// go out as blocked, and a search for lock.verdict=deadlock finds the run.
func checkDeadlock(t *testing.T, j *Jaeger) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	res := lockprobe(t, nil, "run", "-file", filepath.Join(dir, "lock-file"), "-procs", "2", "-scenario", "upgrade",
		"-lock", "ofd", "-timeout", "20s", "-out", out, "-otlp", j.OTLPHTTP)
	t.Logf("%s (run took %v)", exportLine(res.stdout), res.wall.Round(time.Millisecond))
	if res.code != 3 {
		t.Fatalf("exit %d, want 3 (deadlock)\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	run := readRun(t, out)
	if run.verdict != "deadlock" {
		t.Fatalf("verdict %s, want deadlock", run.verdict)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tr, err := waitTraceID(ctx, j, "lockprobe", run.traceID, len(run.file.Spans))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Spans) != len(run.file.Spans) {
		t.Errorf("Jaeger has %d spans, the trace file %d", len(tr.Spans), len(run.file.Spans))
	}
	root, _ := tr.Span(semconv.SpanRun)
	if v := tagOf(root, semconv.VerdictExit); v != json.Number("3") {
		t.Errorf("root %s = %v, want 3", semconv.VerdictExit, v)
	}
	if v := tagOf(root, semconv.RunEndReason); v != "hang" {
		t.Errorf("root %s = %v, want hang", semconv.RunEndReason, v)
	}
	blocked := 0
	for _, s := range tr.Spans {
		if s.OperationName == semconv.SpanAcquire && tagOf(s, semconv.LockOutcome) == semconv.OutcomeBlocked.String() {
			blocked++
		}
	}
	if blocked != 2 {
		t.Errorf("%d blocked lock.acquire spans in Jaeger, want 2 (both upgrades)", blocked)
	}
	for {
		found, err := searchTags(ctx, j, "lockprobe", map[string]string{semconv.Verdict: "deadlock"})
		if err != nil {
			t.Fatal(err)
		}
		if len(found) == 1 && found[0].TraceID == run.traceID {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("search lock.verdict=deadlock: %d traces, want only %s", len(found), run.traceID)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// runForwarded runs contend200 with export on, and checks that the summary
// says every span was exported.
func runForwarded(t *testing.T, env []string, extra ...string) string {
	t.Helper()
	res := runContend(t, env, extra...)
	line := exportLine(res.stdout)
	t.Logf("%s (run took %v)", line, res.wall.Round(time.Millisecond))
	if !regexp.MustCompile(`^OTLP export: \d+ spans exported$`).MatchString(line) {
		t.Errorf("summary line %q, want every span exported\nstdout: %s\nstderr: %s", line, res.stdout, res.stderr)
	}
	if strings.Contains(res.stderr, "level=WARN") {
		t.Errorf("warnings with a working collector:\n%s", res.stderr)
	}
	return res.out
}

// exportLine returns the summary's OTLP export line.
func exportLine(stdout string) string {
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "OTLP export:") {
			return l
		}
	}
	return ""
}

// TestRunCollectorDown points the export at a closed port: the run must
// end as it would without export, keep its trace file complete, warn once,
// and say how many spans were not exported. No Jaeger is needed.
func TestRunCollectorDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs lockprobe twice; skipped in -short mode")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now: connections are refused

	base := runContend(t, nil)
	baseRun := readRun(t, base.out)
	t.Logf("without export: %v, %d spans", base.wall.Round(time.Millisecond), len(baseRun.file.Spans))
	for _, scheme := range []string{"http", "grpc"} {
		t.Run(scheme, func(t *testing.T) {
			res := runContend(t, nil, "-otlp", fmt.Sprintf("%s://127.0.0.1:%d", scheme, port))
			run := readRun(t, res.out)
			t.Logf("with export to a closed port: %v (without: %v)", res.wall.Round(time.Millisecond), base.wall.Round(time.Millisecond))
			if len(run.file.Spans) != len(baseRun.file.Spans) {
				t.Errorf("trace file has %d spans, the run without export %d", len(run.file.Spans), len(baseRun.file.Spans))
			}
			if run.verdict != baseRun.verdict {
				t.Errorf("verdict %s, without export %s", run.verdict, baseRun.verdict)
			}
			if n := strings.Count(res.stderr, "upload to collector failed"); n != 1 {
				t.Errorf("%d upload warnings, want 1\nstderr: %s", n, res.stderr)
			}
			line := exportLine(res.stdout)
			t.Logf("summary: %s", line)
			m := regexp.MustCompile(`^OTLP export: 0 spans exported, (\d+) not exported`).FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("summary line %q, want 0 exported and a count not exported\nstdout: %s", line, res.stdout)
			}
			if !strings.Contains(line, strconv.Itoa(port)) || !strings.Contains(line, "refused") {
				t.Errorf("summary line %q does not name the endpoint and the error", line)
			}
			if n, _ := strconv.Atoi(m[1]); n != len(run.file.Spans) {
				t.Errorf("summary says %d spans not exported, the trace file has %d", n, len(run.file.Spans))
			}
		})
	}
}
