package ebpftracer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/internal/lptest"
	"github.com/lockprobe/lockprobe/lockcall"
	"github.com/lockprobe/lockprobe/ptracer"
	"github.com/lockprobe/lockprobe/semconv"
)

// The test binary is its own helper: with this variable set it waits for its gate and execs.
const helperEnv = "LOCKPROBE_EBPFTRACER_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := WaitAndExec(os.Args[1], os.Args[2:], os.Environ()); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(127)
		}
	}
	os.Exit(m.Run())
}

func need(t *testing.T) string {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	return "/usr/bin/python3"
}

func start(t *testing.T, prog string, args ...string) (*Tracer, *ptracer.Log) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &ptracer.Log{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	tr, err := Start(ctx, Options{Program: prog, Args: args, Helper: []string{self}, Env: append(os.Environ(), helperEnv+"=1")}, r.Add)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Kill()
		<-tr.Done()
		tr.Close()
	})
	return tr, r
}

// The structure offsets the programs follow are found in this kernel's BTF.
func TestKernelOffsets(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skip("no kernel BTF:", err)
	}
	o, err := kernelOffsets(spec)
	if err != nil {
		t.Fatal(err)
	}
	if o.taskFiles == 0 || o.fileInode == 0 || o.inodeIno == 0 || o.sbDev == 0 {
		t.Errorf("offsets %+v", o)
	}
}

// Every kind of lock call, a fork and a close: each seen with its request, its descriptor's
// file as the kernel had it (device, inode, the open file description), and lock requests'
// returns; nothing stops the program.
func TestTraceLockCalls(t *testing.T) {
	py := need(t)
	f := filepath.Join(t.TempDir(), "f")
	tr, r := start(t, py, "-c", lptest.EveryLockCall, f)
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	id, err := host.StatFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	var ofds []uint64
	for _, e := range r.Of(ptracer.CallEnter) {
		texts = append(texts, e.Call.Text())
		if e.Call.Op == lockcall.OpNone {
			t.Errorf("unfiltered call reported: %+v", e)
		}
		if e.Call.Op == lockcall.OpLock || e.Call.Op == lockcall.OpUnlock {
			if e.Desc == nil || e.Desc.Ino != id.Inode || e.Desc.Major != id.Major || e.Desc.Minor != id.Minor || e.Desc.OFD == 0 {
				t.Errorf("%s: descriptor %+v, want the file %v", e.Call.Text(), e.Desc, id)
			} else {
				ofds = append(ofds, e.Desc.OFD)
			}
		}
	}
	joined := strings.Join(texts, "\n")
	for _, want := range []string{
		"F_SETLKW, {F_WRLCK, start=0, len=1}", "F_SETLKW, {F_UNLCK, start=0, len=1}",
		"LOCK_SH|LOCK_NB)", "F_OFD_SETLK, {F_RDLCK, start=4, len=2}", "close(",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no call %q among\n%s", want, joined)
		}
	}
	// The parent's and the child's calls went through one open file description.
	for _, o := range ofds {
		if o != ofds[0] {
			t.Errorf("open file descriptions %x: the fork shares the parent's", ofds)
			break
		}
	}
	rets := r.Of(ptracer.CallReturn)
	for _, e := range rets {
		if !ptracer.NeedsReturn(e.Call) || e.Errno != 0 {
			t.Errorf("return %s errno %v", e.Call.Text(), e.Errno)
		}
	}
	if len(rets) != 3 {
		t.Errorf("%d returns, want 3 (F_SETLKW, flock, F_OFD_SETLK)", len(rets))
	}
	starts, exits := r.Of(ptracer.ProcStart), r.Of(ptracer.ProcExit)
	if len(starts) != 2 || len(exits) != 2 {
		t.Fatalf("starts %+v exits %+v, want 2 and 2", starts, exits)
	}
	if starts[1].PPID != starts[0].PID || !strings.Contains(strings.Join(starts[0].Argv, " "), "fork") {
		t.Errorf("starts %+v", starts)
	}
	for _, e := range exits {
		want := "exit status 0"
		if e.PID == starts[1].PID {
			want = "exit status 3"
		}
		if e.Status != want {
			t.Errorf("pid %d: %q, want %q", e.PID, e.Status, want)
		}
	}
	for _, e := range r.Of(ptracer.CallEnter) {
		if e.Call.Kind == semconv.KindOFD && e.PID != starts[1].PID {
			t.Errorf("OFD lock by %d, want the child %d", e.PID, starts[1].PID)
		}
	}
}

// A blocked F_SETLKW is seen at entry and returns once the holder lets go; the program was
// never stopped.
func TestBlockedCall(t *testing.T) {
	py := need(t)
	f := filepath.Join(t.TempDir(), "f")
	fh, err := os.OpenFile(f, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(fh.Fd(), unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	tr, r := start(t, py, "-c", lptest.WaitForLock, f)
	deadline := time.Now().Add(10 * time.Second)
	for len(r.Of(ptracer.CallEnter)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	enters := r.Of(ptracer.CallEnter)
	if len(enters) == 0 {
		t.Fatal("no call seen")
	}
	time.Sleep(200 * time.Millisecond)
	if ps, err := host.ReadProcess(enters[0].PID, 0); err != nil || ps.State == "t" || ps.State == "T" {
		t.Errorf("the program is stopped (%+v, %v)", ps, err)
	}
	if n := len(r.Of(ptracer.CallReturn)); n != 0 {
		t.Fatalf("%d returns while the lock is held", n)
	}
	lk.Type = unix.F_UNLCK
	if err := unix.FcntlFlock(fh.Fd(), unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if err := tr.Wait(); err != nil {
		t.Fatal(err)
	}
	rets := r.Of(ptracer.CallReturn)
	if len(rets) != 1 || rets[0].Errno != 0 || !rets[0].Call.Wait {
		t.Fatalf("returns %+v", rets)
	}
	if d := rets[0].At.Sub(enters[0].At); d < 200*time.Millisecond {
		t.Errorf("returned %v after entry, before the holder let go", d)
	}
}

// Attached to a process that already runs, the tracer sees its later calls and its end, and
// Kill ends the tracing without touching the process.
func TestAttach(t *testing.T) {
	py := need(t)
	f := filepath.Join(t.TempDir(), "f")
	cmd := exec.Command(py, "-c", `import fcntl, sys, time
f = open(sys.argv[1], "w")
time.sleep(1)
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
time.sleep(60)`, f)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	r := &ptracer.Log{}
	tr, err := Start(context.Background(), Options{Attach: []int{cmd.Process.Pid}}, r.Add)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.Of(ptracer.CallReturn)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if rets := r.Of(ptracer.CallReturn); len(rets) != 1 || rets[0].PID != cmd.Process.Pid || rets[0].Call.Mode != semconv.ModeWrite {
		t.Fatalf("returns %+v", rets)
	}
	tr.Kill()
	select {
	case <-tr.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("tracing did not end at Kill")
	}
	if !host.ProcessExists(cmd.Process.Pid) {
		t.Error("Kill of an attached tracer killed the process")
	}
}
