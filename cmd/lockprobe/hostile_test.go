package main

import (
	"bytes"
	endian "encoding/binary"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// Hostile input at the edges of `run`, `analyze` and `export`: what must be refused with one
// line and exit status 2, what must never reach an output file, and what a stranger on the
// controller's port must not be able to do. TESTING.md lists them with what lockprobe promises.

// usage runs lockprobe with args and checks for exit 2 with one line on stderr that says want.
func usage(t *testing.T, want string, args ...string) runResult {
	t.Helper()
	res := lockprobe(t, 20*time.Second, args...)
	msg := strings.TrimSpace(res.stderr)
	if res.code != 2 || !strings.Contains(msg, want) || strings.Contains(msg, "\n") || strings.ContainsAny(msg, "\r\x1b") {
		t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line saying %q", args, res.code, res.stderr, want)
	}
	if len(msg) > 400 {
		t.Errorf("%v: a one-line error of %d bytes", args, len(msg))
	}
	return res
}

// refusal is one bad command line and what its one-line error must say.
type refusal struct {
	name string
	args []string
	want string
}

// assertRefused runs each case as a subtest: a usage error, no locker left, and no output folder
// out made for it.
func assertRefused(t *testing.T, out string, cases []refusal) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			usage(t, c.want, c.args...)
			assertNoLockers(t)
			if _, err := os.Stat(out); err == nil {
				t.Errorf("an output folder was made for a refused run")
				os.RemoveAll(out)
			}
		})
	}
}

func writeScenario(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("s%d.lps", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHostileInputIsRefused: each of these was accepted (and often called HEALTHY) or failed
// with exit 1; each is a usage error now, before any process starts.
func TestHostileInputIsRefused(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(elsewhere, "victim")
	os.WriteFile(victim, nil, 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(victim, link)
	os.Symlink(victim, file+".3")
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "not-a-folder")
	os.WriteFile(notDir, []byte("x"), 0o644)
	out := filepath.Join(dir, "out")
	run := func(extra ...string) []string { return append([]string{"run", "-out", out}, extra...) }
	assertRefused(t, out, []refusal{
		{"empty -file", run("-file", ""), "empty path"},
		{"-file in /proc", run("-file", "/proc/self/status"), "pseudo file system"},
		{"-file a symlink", run("-file", link), "symbolic link"},
		{"-file a FIFO", run("-file", fifo), "not a regular file (a FIFO)"},
		{"-timeout 0", run("-file", file, "-timeout", "0"), "-timeout 0"},
		{"-out an existing file", []string{"run", "-file", file, "-out", notDir}, "not a folder"},
		{"-scenario a FIFO", run("-file", file, "-scenario", fifo), "regular file"},
		{"file@ a symlink out of -allow", run("-file", file, "-scenario", writeScenario(t, dir, "all: file@{file}.3\n")), "symbolic link"},
		{"file@ elsewhere", run("-file", file, "-scenario", writeScenario(t, dir, "all: file@"+victim+"\n")), "not a -file"},
		{"file@ with a NUL", run("-file", file, "-scenario", writeScenario(t, dir, "all: file@{file}\x00x\n")), "control character"},
		{"carriage return in a token", run("-file", file, "-scenario", writeScenario(t, dir, "procs \r 0\n")), `\x0d`},
		{"a 900 KB token", run("-file", file, "-scenario", writeScenario(t, dir, "write@"+strings.Repeat("9", 900000)+"\n")), "…"},
		{"-listen without -remote", run("-file", file, "-listen", "tcp://127.0.0.1:0"), "-listen is for -remote"},
		{"-listen not an endpoint", run("-file", file, "-remote", "1", "-listen", "127.0.0.1"), "want tcp://HOST:PORT"},
		{"analyze an empty trace", []string{"analyze", writeScenario(t, dir, "")}, "no span in it"},
		{"analyze junk without a newline", []string{"analyze", writeScenario(t, dir, "junk, no newline")}, "not a trace file"},
		{"export to no URL", []string{"export", "-otlp", "notaurl", writeScenario(t, dir, "")}, "-otlp"},
	})
	if b, _ := os.ReadFile(victim); len(b) != 0 {
		t.Errorf("the symlink's target was written: %q", b)
	}
}

// TestBusyListenKeepsThePreviousTrace: a -listen port already taken is bad input (exit 2), and
// the previous run's trace in -out is left as it was (it used to be truncated first).
func TestBusyListenKeepsThePreviousTrace(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o700)
	old := filepath.Join(out, tracefile.FileName)
	os.WriteFile(old, []byte("the previous run"), 0o600)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	usage(t, "address already in use", "run", "-file", filepath.Join(dir, "f"), "-out", out, "-remote", "1", "-listen", "tcp://"+busy.Addr().String())
	if b, _ := os.ReadFile(old); string(b) != "the previous run" {
		t.Errorf("the previous trace became %q", b)
	}
	assertNoLockers(t)
}

// TestNoVerdictWithoutARun: a run that never ran its scenario is not healthy. A start that
// failed, and Ctrl-C while waiting for a remote locker, used to print "verdict: HEALTHY".
func TestNoVerdictWithoutARun(t *testing.T) {
	for _, c := range []struct {
		name      string
		interrupt bool
		unjudged  string
	}{
		{"start failed", false, "start-failed"},
		{"interrupted while waiting", true, "not-started"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			cmd := startLockprobe(t, "run", "-file", filepath.Join(dir, "f"), "-procs", "2", "-remote", "1", "-out", out, "-startup-timeout", "2s")
			if c.interrupt {
				time.Sleep(time.Second)
				cmd.Process.Signal(syscall.SIGINT)
			}
			res := waitLockprobe(t, cmd)
			assertNoLockers(t)
			if res.code != 1 || strings.Contains(res.stdout, "HEALTHY") || !strings.Contains(res.stdout, "NO VERDICT") {
				t.Errorf("exit %d; stdout:\n%s\nstderr:\n%s\nwant exit 1 and no verdict", res.code, res.stdout, res.stderr)
			}
			v := readVerdictMap(t, out)["verdict"].(map[string]any)
			if v["class"] != "no-verdict" || v["unjudged"] != c.unjudged {
				t.Errorf("verdict.json verdict %v, want no-verdict (%s)", v, c.unjudged)
			}
		})
	}
}

// TestNoSecretInAnyOutput: the -token secret once appeared three times in the files attached
// to tickets (the command line in the trace, verdict.json, report.html), and export sent it on.
// None of the run's outputs holds it now, and they are readable by their owner only.
func TestNoSecretInAnyOutput(t *testing.T) {
	const secret = "s3cret-4711-do-not-leak"
	dir := t.TempDir()
	file := filepath.Join(dir, "lock-file")
	out := filepath.Join(dir, "out")
	endpoint := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	cmd := startLockprobe(t, "run", "-file", file, "-procs", "2", "-remote", "1", "-listen", endpoint, "-token", secret, "-out", out, "-timeout", "30s")
	remote := exec.Command(binary, "locker", "-connect", endpoint, "-id", "1", "-allow", file)
	remote.Env = append(os.Environ(), "LOCKPROBE_TOKEN="+secret)
	if b, err := remote.CombinedOutput(); err != nil {
		t.Fatalf("remote locker: %v: %s", err, b)
	}
	if res := waitLockprobe(t, cmd); res.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	assertNoLockers(t)
	exported := lockprobe(t, 30*time.Second, "export", "-format", "otlp-json", out)
	if strings.Contains(exported.stdout, secret) {
		t.Error("export sends the secret")
	}
	if !strings.Contains(exported.stdout, "-token REDACTED") {
		t.Error("the exported command line does not show the token redacted")
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("output folder: %v, mode %v; want 0700", err, st.Mode().Perm())
	}
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret", d.Name())
		}
		if st, _ := d.Info(); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", d.Name(), st.Mode().Perm())
		}
		return nil
	})
	tr, err := tracefile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tr.Spans {
		if s.Name == semconv.SpanRun && strings.Contains(s.Attrs.Str(semconv.RunCommand), secret) {
			t.Error("the root span's command line holds the secret")
		}
	}
}

// hostile clients: what each writes to the controller's TCP port.
func zmtpGreeting() []byte {
	g := make([]byte, 64)
	g[0], g[9], g[10] = 0xFF, 0x7F, 3
	copy(g[12:], "NULL")
	return g
}

func zmtpReady(id string) []byte {
	prop := func(k, v string) []byte {
		b := append([]byte{byte(len(k))}, k...)
		b = endian.BigEndian.AppendUint32(b, uint32(len(v)))
		return append(b, v...)
	}
	body := append([]byte{5}, "READY"...)
	body = append(body, prop("Socket-Type", "DEALER")...)
	body = append(body, prop("Identity", id)...)
	return append([]byte{0x04, byte(len(body))}, body...)
}

// TestStrangersOnThePortCannotStopARun: anyone who reaches the controller's port used to crash
// the run before authenticating (zmq4 panicked on a READY with cut-short metadata, or allocated
// a frame of 2^62 bytes), and one idle connection kept every locker out. Now the run, with
// strangers doing all of that at once, ends healthy with its remote locker.
func TestStrangersOnThePortCannotStopARun(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lock-file")
	out := filepath.Join(dir, "out")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := startLockprobe(t, "run", "-file", file, "-procs", "2", "-remote", "1", "-listen", "tcp://"+addr, "-token", "t0k", "-out", out, "-timeout", "30s")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		for i := 0; i < 100; i++ {
			if c, err := net.Dial("tcp", addr); err == nil {
				conns = append(conns, c)
				return c
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("cannot reach %s", addr)
		return nil
	}
	for i := 0; i < 50; i++ {
		dial() // idle: never a byte
	}
	dial().Write(zmtpGreeting()[:20]) // half a greeting, then silence
	for _, hostile := range [][]byte{
		append(zmtpGreeting(), []byte("\x04\x08\x05READY\x01A")...),                          // the crash
		append(append(zmtpGreeting(), zmtpReady("big")...), 0x02, 0x40, 0, 0, 0, 0, 0, 0, 0), // 2^62 bytes
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		dial().Write(hostile)
	}
	remote := exec.Command(binary, "locker", "-connect", "tcp://"+addr, "-id", "1", "-allow", file)
	remote.Env = append(os.Environ(), "LOCKPROBE_TOKEN=t0k")
	t0 := time.Now()
	b, err := remote.CombinedOutput()
	t.Logf("the remote locker ran its queue in %v beside %d strangers", time.Since(t0).Round(time.Millisecond), len(conns))
	if err != nil {
		t.Errorf("remote locker: %v: %s", err, b)
	}
	res := waitLockprobe(t, cmd)
	assertNoLockers(t)
	if res.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if strings.Contains(res.stderr, "panic") {
		t.Errorf("the controller panicked:\n%s", res.stderr)
	}
}

// TestSeedAbsoluteTime: the seed harness's command files write an instant as
// write@2026-12-01 21:30:00 (UTC); lockprobe once refused it. Scheduled there, the attempt fires
// there.
func TestSeedAbsoluteTime(t *testing.T) {
	at := time.Now().UTC().Add(3 * time.Second).Truncate(time.Second)
	res := runScenario(t, fmt.Sprintf("procs 2\nall: file@{file}\nall: write@%s\nall: releaseif\nall: stop\n", at.Format("2006-01-02 15:04:05")))
	if res.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	attempts := spansNamed(res.trace, semconv.SpanAcquire)
	if len(attempts) != 2 {
		t.Fatalf("%d attempts, want 2", len(attempts))
	}
	for _, a := range attempts {
		if s := a.Attrs.IntOr(semconv.LockScheduled, 0); s != at.UnixNano() {
			t.Errorf("attempt scheduled at %d, want %d (%s)", s, at.UnixNano(), at)
		}
		if d := time.Duration(a.Start - at.UnixNano()); d < 0 || d > 50*time.Millisecond {
			t.Errorf("attempt began %v after its instant", d)
		}
	}
}

// TestFullDiskLeavesNoTemporaryFiles: reports that cannot be written whole (a full disk) leave
// nothing half-written behind. A tmpfs of 16 KiB stands for the full disk.
func TestFullDiskLeavesNoTemporaryFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	res := runScenario(t, "procs 2\nall: file@{file}\nall: write@+0s\nall: releaseif\nall: stop\n")
	tiny := t.TempDir()
	if err := unix.Mount("tmpfs", tiny, "tmpfs", 0, "size=16k"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(tiny, unix.MNT_DETACH)
	a := lockprobe(t, 30*time.Second, "analyze", "-out", tiny, res.out)
	if a.code != 1 || !strings.Contains(a.stderr, "no space left") {
		t.Errorf("analyze onto a full disk: exit %d, stderr %q; want 1 and the disk full", a.code, a.stderr)
	}
	entries, _ := os.ReadDir(tiny)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("%s left behind", e.Name())
		}
	}
}
