// Package jaeger runs a real Jaeger (the v2 binary, in-memory storage) on
// loopback for end-to-end tests, and reads traces back through its query API.
//
// The binary is the version pinned in tools/go.mod, built once into
// .cache/bin/jaeger-<version> (scripts/jaeger.sh build does the same); Start
// builds it when it is missing, which takes minutes, so CI should build it
// beforehand. JAEGER_BIN names another binary to use.
package jaeger

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	jaegerModule  = "github.com/jaegertracing/jaeger"
	jaegerCommand = jaegerModule + "/cmd/jaeger"
	rootModule    = "github.com/lockprobe/lockprobe"
	// startTimeout bounds one start-up; Jaeger is usually ready in about
	// a second, far longer on a loaded machine.
	startTimeout = 2 * time.Minute
	stopTimeout  = 10 * time.Second
	startTries   = 3
)

// Jaeger is one running Jaeger process.
type Jaeger struct {
	// OTLPHTTP is the OTLP/HTTP base URL, e.g. http://127.0.0.1:41234.
	OTLPHTTP string
	// OTLPGRPC is the OTLP/gRPC endpoint as grpc://127.0.0.1:port.
	OTLPGRPC string
	// QueryURL is the base URL of the UI and the query API.
	QueryURL string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait has returned
	log    string        // path of the process's output
	client *http.Client
}

// Start starts Jaeger on free loopback ports and waits until its query API
// and both OTLP receivers answer. It skips the test in -short mode. The
// process is stopped, and checked to be gone, in t.Cleanup.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real Jaeger; skipped in -short mode")
	}
	bin, err := Binary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A free port picked here may be taken before Jaeger binds it; then
	// Jaeger exits at once and another set of ports is tried.
	for try := 1; ; try++ {
		j, err := start(t, bin)
		if err == nil {
			return j
		}
		if try == startTries {
			t.Fatalf("jaeger: %v", err)
		}
		t.Logf("jaeger: start failed, retrying with other ports: %v", err)
	}
}

func start(t testing.TB, bin string) (*Jaeger, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(config(ports[0], ports[1], ports[2], ports[3])), 0o644); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	logPath := filepath.Join(dir, "jaeger.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor

	j := &Jaeger{
		OTLPGRPC: fmt.Sprintf("grpc://127.0.0.1:%d", ports[0]),
		OTLPHTTP: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		QueryURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		exited:   make(chan struct{}),
		log:      logPath,
		client:   &http.Client{Timeout: 10 * time.Second},
	}
	j.cmd = exec.Command(bin, "--config", cfg)
	j.cmd.Stdout, j.cmd.Stderr = logFile, logFile
	// Its own process group, so that a ^C to the test reaches the test
	// first and the cleanup below does the stopping.
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	began := time.Now()
	if err := j.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = j.cmd.Wait()
		close(j.exited)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	if err := j.waitReady(ctx); err != nil {
		j.stop()
		return nil, fmt.Errorf("%w\n%s", err, j.logTail(20))
	}
	t.Logf("jaeger: ready in %v: OTLP %s %s, query %s", time.Since(began).Round(time.Millisecond),
		j.OTLPGRPC, j.OTLPHTTP, j.QueryURL)
	t.Cleanup(func() {
		if err := j.stop(); err != nil {
			t.Errorf("jaeger: %v", err)
		}
		if t.Failed() {
			t.Logf("jaeger log:\n%s", j.logTail(40))
		}
	})
	return j, nil
}

// config is a minimal Jaeger v2 configuration: OTLP in, memory storage,
// query API; every listener on 127.0.0.1, and no telemetry listener.
func config(otlpGRPC, otlpHTTP, queryHTTP, queryGRPC int) string {
	return fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    # On by default in v2: it would send Jaeger's own spans to localhost:4317.
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:%[3]d
    grpc:
      endpoint: 127.0.0.1:%[4]d
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%[1]d
      http:
        endpoint: 127.0.0.1:%[2]d
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, otlpGRPC, otlpHTTP, queryHTTP, queryGRPC)
}

// waitReady polls until the query API answers and both OTLP ports accept
// connections (the collector starts its receivers after its extensions).
func (j *Jaeger) waitReady(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = j.ready(ctx); last == nil {
			return nil
		}
		select {
		case <-j.exited:
			return fmt.Errorf("exited during start-up (%v)", j.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (j *Jaeger) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL+"/api/services", nil)
	if err != nil {
		return err
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("query API: %s", resp.Status)
	}
	var d net.Dialer
	for _, ep := range []string{j.OTLPGRPC, j.OTLPHTTP} {
		c, err := d.DialContext(ctx, "tcp", ep[strings.Index(ep, "//")+2:])
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// stop sends SIGTERM, then SIGKILL after stopTimeout, and checks that the
// process is gone.
func (j *Jaeger) stop() error {
	select {
	case <-j.exited:
	default:
		_ = j.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-j.exited:
		case <-time.After(stopTimeout):
			_ = j.cmd.Process.Kill()
			<-j.exited
			return fmt.Errorf("pid %d ignored SIGTERM for %v and was killed", j.cmd.Process.Pid, stopTimeout)
		}
	}
	// Reaped by Wait: the pid must no longer exist.
	if err := syscall.Kill(j.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("pid %d still there after exit: kill(0) = %v", j.cmd.Process.Pid, err)
	}
	return nil
}

// logTail returns the last n lines of the process's output.
func (j *Jaeger) logTail(n int) string {
	b, err := os.ReadFile(j.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close() // held until all are picked, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Binary returns the path of the pinned Jaeger binary, building it first
// (minutes) if it is not in .cache/bin yet. JAEGER_BIN overrides.
func Binary(ctx context.Context) (string, error) {
	if bin := os.Getenv("JAEGER_BIN"); bin != "" {
		return bin, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	version, err := pinnedVersion(filepath.Join(root, "tools", "go.mod"))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".cache", "bin", "jaeger-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	// Several test binaries may get here at once: the lock makes one build
	// and the others find its result.
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("jaeger: lock build: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp := fmt.Sprintf("%s.tmp.%d", bin, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, jaegerCommand)
	cmd.Dir = filepath.Join(root, "tools")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("jaeger: build %s %s: %w\n%s", jaegerCommand, version, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	return bin, nil
}

// repoRoot finds the lockprobe module's folder above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module "+rootModule+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("jaeger: no " + rootModule + " go.mod above the working directory")
		}
		dir = parent
	}
}

// pinnedVersion reads the jaeger version required by the tools go.mod.
func pinnedVersion(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == jaegerModule {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("jaeger: read %s: %w", gomod, err)
	}
	return "", fmt.Errorf("jaeger: %s does not require %s", gomod, jaegerModule)
}
