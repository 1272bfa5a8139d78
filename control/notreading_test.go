package control_test

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/control"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/wire"
)

// zmtpFrame frames body as one ZMTP message frame (flags 0, or long) or, with command set, as a
// ZMTP command.
func zmtpFrame(body []byte, command bool) []byte {
	fl := byte(0)
	if command {
		fl = 0x04
	}
	if len(body) > 255 {
		return append(binary.BigEndian.AppendUint64([]byte{fl | 0x02}, uint64(len(body))), body...)
	}
	return append([]byte{fl, byte(len(body))}, body...)
}

// deafMember connects to the controller as a DEALER speaking ZMTP by hand, says hello and
// ready, asks for pong after pong, and never reads a byte: the kernel's socket buffer and then
// the controller's outbox for it fill up. It ends when its process is killed.
func deafMember(t *testing.T, spec control.Spec, p *fakeProc) {
	path, ok := strings.CutPrefix(spec.Endpoint, "ipc://")
	if !ok {
		t.Errorf("endpoint %q is not a Unix socket", spec.Endpoint)
		return
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Error(err)
		return
	}
	go func() { <-p.killed; c.Close() }()
	greeting := make([]byte, 64)
	greeting[0], greeting[9], greeting[10] = 0xFF, 0x7F, 3
	copy(greeting[12:], "NULL")
	ready := append([]byte{5}, "READY"...)
	for _, kv := range [][2]string{{"Socket-Type", "DEALER"}, {"Identity", "deaf"}} {
		ready = append(ready, byte(len(kv[0])))
		ready = append(ready, kv[0]...)
		ready = binary.BigEndian.AppendUint32(ready, uint32(len(kv[1])))
		ready = append(ready, kv[1]...)
	}
	out := append(greeting, zmtpFrame(ready, true)...)
	host, _ := os.Hostname()
	seq := uint64(0)
	msg := func(m *proto.Message) {
		seq++
		m.Seq = seq
		b, err := proto.Encode(m)
		if err != nil {
			t.Error(err)
		}
		out = append(out, zmtpFrame(b, false)...)
	}
	msg(&proto.Message{Kind: proto.KindHello, Hello: &proto.Hello{Version: proto.Version, LockerID: spec.ID, Role: spec.Role,
		PID: p.PID(), Host: host, Token: spec.Token}})
	msg(&proto.Message{Kind: proto.KindReady, Ready: &proto.Ready{}})
	for i := range 20000 {
		msg(&proto.Message{Kind: proto.KindPing, Ping: &proto.Ping{T1: int64(i)}})
	}
	_, _ = c.Write(out) // until it is killed: a write error then is its end
}

// TestMemberNotReadingStopsNothing: one member reads nothing its controller sends while three
// real lockers run a hold and wait. The controller's sends to the deaf one cannot wait for it:
// the others get their queues, their beats (idle from about 4 s, they leave on their own after
// 5 s without one, as a locker does whose controller is gone) and their stop, and say goodbye;
// nothing they sent is lost; the verdict is healthy; and the deaf member is counted and named
// as not reading, then killed. On zmq4's ROUTER the controller's loop stopped in the first
// write to the deaf member whose socket buffer was full, for 10 s a write, and nothing else
// happened.
func TestMemberNotReadingStopsNothing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	const deaf = 3
	o := baseOptions(t, queues(t, "all: file@{file}\n0: write@+0s\n0: sleep 3s\n0: release\n1-{last}: write@+1s style=wait\n1-{last}: release\n", deaf+1, file), file)
	o.Timeout = 8 * time.Second // the deaf member never runs its queue: the run ends by its timeout
	o.Listener = func(ctx context.Context, lo wire.ListenOptions) (*wire.Conn, error) {
		lo.Gate.MaxQueued = 64 << 10 // not reading shows sooner
		return wire.Listen(ctx, lo)
	}
	o.Start = func(s control.Spec) (control.Process, error) {
		if s.ID != deaf {
			return startInProcess(s)
		}
		p := newFake()
		go deafMember(t, s, p)
		return p, nil
	}
	type ran struct {
		res *control.Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := control.Run(t.Context(), o)
		done <- ran{res, err}
	}()
	var got ran
	select {
	case got = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the run of 8 s has not ended after 60 s: its controller waits for a member that does not read")
	}
	res, err := got.res, got.err
	if err != nil {
		t.Fatal(err)
	}
	if res.EndReason != "timeout" {
		t.Errorf("end reason %q, want timeout", res.EndReason)
	}
	tr := readTrace(t, res)
	goodbye := map[int64]bool{}
	granted := map[int64]int{}
	for _, s := range tr.Spans {
		switch s.Name {
		case semconv.SpanRun:
			if lost := s.Attrs.IntOr(semconv.RunLost, -1); lost != 0 {
				t.Errorf("messages lost: %d, want 0", lost)
			}
		case semconv.SpanLocker:
			for _, e := range s.Events {
				if e.Name == semconv.EventExit {
					g, _ := e.Attrs.Get(semconv.ExitGoodbye)
					goodbye[s.Attrs.IntOr(semconv.LockerID, -1)] = g == true
				}
			}
		case semconv.SpanAcquire:
			if s.Attrs.Str(semconv.LockOutcome) == semconv.OutcomeGranted.String() {
				granted[s.Attrs.IntOr(semconv.LockerID, -1)]++
			}
		}
	}
	for id := range int64(deaf) {
		if !goodbye[id] {
			t.Errorf("locker %d ended without its goodbye (it heard no beat for 5 s, or no stop)", id)
		}
		if granted[id] != 1 {
			t.Errorf("locker %d granted %d times, want once", id, granted[id])
		}
	}
	named := false
	for _, u := range res.Unresponsive {
		if strings.HasPrefix(u, "locker 3 ") && strings.Contains(u, "not reading") {
			named = true
		}
	}
	if !named {
		t.Errorf("unresponsive %q: the deaf locker 3 is not named as not reading", res.Unresponsive)
	}
	killed := strings.Join(res.Killed, ", ")
	if !strings.Contains(killed, "locker 3 ") {
		t.Errorf("killed: %q, want the deaf locker 3", killed)
	}
	ar := analysis.Analyze(tr, analysis.Options{})
	if ar.Verdict.Class != analysis.ClassHealthy {
		t.Errorf("verdict %s (exit %d), want healthy", ar.Verdict.Class, ar.Verdict.Exit)
	}
}
