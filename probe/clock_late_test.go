package probe

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/wire"
)

// TestLatePongIsAskedAgain: a controller that answers a ping only after the pong wait (a
// thousand lockers starting at once leave it that little of the cores) delays a member's clock
// sync (one on another node: those on the controller's host measure nothing); it does not end
// the locker, which asks again and is ready within its start-up deadline.
func TestLatePongIsAskedAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out one pong wait")
	}
	ctl, done, stop := startBareLocker(t)
	defer func() { stop(); <-done }()
	pings := 0
	start := time.Now()
	untilReady(t, ctl, done, &proto.Welcome{Heartbeat: time.Second}, func(in wire.Incoming) {
		if pings++; pings == 1 {
			return // this one is answered too late: never
		}
		_ = ctl.SendTo(in.From, &proto.Message{Kind: proto.KindPong, Pong: &proto.Pong{T1: in.Msg.Ping.T1, TC: time.Now().UnixNano()}})
	})
	if waited := time.Since(start); waited < pongWait {
		t.Errorf("ready after %s, before the unanswered ping's wait of %s", waited, pongWait)
	}
	if pings < 2 {
		t.Errorf("ready after %d pings; the unanswered one must have been asked again", pings)
	}
}

// TestSameClockReadyWithoutPings: a member on the controller's host shares its clock: it says
// ready right after the welcome, with offset and uncertainty 0, and sends no ping before (a
// thousand lockers' round trips queued behind one another at start-up).
func TestSameClockReadyWithoutPings(t *testing.T) {
	ctl, done, stop := startBareLocker(t)
	defer func() { stop(); <-done }()
	r := untilReady(t, ctl, done, &proto.Welcome{SameClock: true, Heartbeat: time.Second}, func(wire.Incoming) {
		t.Fatal("a member sharing the controller's clock pinged before it was ready")
	})
	if r.Offset != 0 || r.Uncertainty != 0 {
		t.Errorf("ready with offset %d, uncertainty %d; want 0, 0", r.Offset, r.Uncertainty)
	}
}

// untilReady answers the locker's hello with w and each ping with ping, and returns its ready.
func untilReady(t *testing.T, ctl *wire.Conn, done <-chan error, w *proto.Welcome, ping func(wire.Incoming)) *proto.Ready {
	t.Helper()
	for {
		select {
		case err := <-done:
			t.Fatalf("the locker ended before it was ready: %v", err)
		case in := <-ctl.In():
			if in.Err != nil {
				t.Fatal(in.Err)
			}
			switch in.Msg.Kind {
			case proto.KindHello:
				_ = ctl.SendTo(in.From, &proto.Message{Kind: proto.KindWelcome, Welcome: w})
				ctl.Trust(in.From)
			case proto.KindPing:
				ping(in)
			case proto.KindReady:
				return in.Msg.Ready
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no ready")
		}
	}
}

// startBareLocker starts a Locker against a ROUTER the test answers by hand; stop cancels the
// locker, and the test's end closes the ROUTER.
func startBareLocker(t *testing.T) (ctl *wire.Conn, done <-chan error, stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	ctl, err := wire.Listen(ctx, wire.ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{Endpoint: ctl.LocalEndpoint(), Allow: []string{file}, StartupTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	ended := make(chan error, 1)
	go func() { ended <- l.Run(runCtx) }()
	return ctl, ended, stopRun
}
