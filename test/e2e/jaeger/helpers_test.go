package jaeger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/internal/lptest"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// lockprobeBin is the lockprobe executable, built once in TestMain: the
// lockers must be real processes, started the way users start them.
var lockprobeBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "lockprobe-jaeger-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lockprobeBin, err = lptest.BuildLockprobe(dir, lptest.Package)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// contend200 makes every locker want the same write lock at once and hold
// it for 200ms: four of five wait, so their attempts gather lock.conflict
// events, and every locker ends up with an attempt and a hold.
const contend200 = `# description: contend, each hold lasting 200ms
all: file@{file}
all: write@+1s
all: sleep 200ms
all: release
all: stop
`

const procs = 5

// runDeadline bounds one lockprobe process; the runs here take seconds.
const runDeadline = 30 * time.Second

type runResult struct {
	code           int
	stdout, stderr string
	wall           time.Duration
	out            string // the output folder
}

// lockprobe runs the binary with args and env (added to an environment
// without OTEL_* variables) within runDeadline.
func lockprobe(t *testing.T, env []string, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, lockprobeBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	res := runResult{stdout: stdout.String(), stderr: stderr.String(), wall: time.Since(began)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("lockprobe %v did not end within %v\nstdout: %s\nstderr: %s", args, runDeadline, res.stdout, res.stderr)
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("lockprobe %v: %v", args, err)
	}
	return res
}

// runContend runs contend200 with procs lockers into a fresh folder, with
// extra flags and environment.
func runContend(t *testing.T, env []string, extra ...string) runResult {
	t.Helper()
	dir := t.TempDir()
	scen := filepath.Join(dir, "contend200.lps")
	if err := os.WriteFile(scen, []byte(contend200), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	args := append([]string{"run", "-file", filepath.Join(dir, "lock-file"), "-procs", strconv.Itoa(procs),
		"-scenario", scen, "-timeout", "10s", "-out", out}, extra...)
	res := lockprobe(t, env, args...)
	res.out = out
	if res.code != 0 {
		t.Fatalf("lockprobe run exited %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	return res
}

// savedRun is what a run left in its folder: the merged trace file, its
// trace id, and the verdict class.
type savedRun struct {
	file    *tracefile.Trace
	traceID string
	verdict string
}

func readRun(t *testing.T, out string) savedRun {
	t.Helper()
	tr, err := tracefile.Open(filepath.Join(out, tracefile.FileName))
	if err != nil {
		t.Fatal(err)
	}
	var r savedRun
	r.file = tr
	for _, s := range tr.Spans {
		if s.Open() {
			t.Errorf("trace file: span %s %s never ended", s.Name, s.SpanID)
		}
		if s.Name == semconv.SpanRun {
			r.traceID = s.TraceID
		}
	}
	if r.traceID == "" {
		t.Fatalf("trace file has no %s span", semconv.SpanRun)
	}
	b, err := os.ReadFile(filepath.Join(out, "verdict.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Verdict struct {
			Class string `json:"class"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Verdict.Class == "" {
		t.Fatalf("verdict.json: class %q, %v", v.Verdict.Class, err)
	}
	r.verdict = v.Verdict.Class
	return r
}

// waitTraceID polls until Jaeger holds trace id of service with at least
// spans spans (spans arrive in several uploads, and show in the query API
// about two seconds after their export).
func waitTraceID(ctx context.Context, j *Jaeger, service, id string, spans int) (Trace, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var have int
	for {
		traces, err := j.Traces(ctx, service)
		if err != nil {
			return Trace{}, err
		}
		for _, tr := range traces {
			if tr.TraceID == id {
				have = len(tr.Spans)
				if have >= spans {
					return tr, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return Trace{}, fmt.Errorf("trace %s of %q: %d spans, want %d: %w", id, service, have, spans, ctx.Err())
		case <-tick.C:
		}
	}
}

// searchTags asks the query API for the traces of service with these tags,
// as a user searching for runs by verdict would.
func searchTags(ctx context.Context, j *Jaeger, service string, tags map[string]string) ([]Trace, error) {
	tj, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	q := url.Values{"service": {service}, "tags": {string(tj)}, "limit": {"100"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL+"/api/traces?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("search %s: %s: %s", q.Encode(), resp.Status, body)
	}
	var out struct {
		Data []Trace `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("search: decode: %w", err)
	}
	return out.Data, nil
}
