package wire

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/lockprobe/lockprobe/proto"
)

// wait bounds every receive: a lost message fails the test instead of hanging it.
const wait = 5 * time.Second

func listen(t *testing.T) *Conn {
	t.Helper()
	r, err := Listen(t.Context(), ListenOptions{TCP: "tcp://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if ep := r.RemoteEndpoint(); !strings.HasPrefix(ep, "tcp://127.0.0.1:") || strings.HasSuffix(ep, ":0") {
		t.Fatalf("RemoteEndpoint() = %q, want tcp://127.0.0.1:<port>", ep)
	}
	if ep := r.LocalEndpoint(); !strings.HasPrefix(ep, "ipc:///") {
		t.Fatalf("LocalEndpoint() = %q, want ipc:///...", ep)
	}
	return r
}

func dial(t *testing.T, r *Conn, id string) *Conn {
	t.Helper()
	d, err := Dial(t.Context(), r.RemoteEndpoint(), id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func recv(t *testing.T, c *Conn) Incoming {
	t.Helper()
	select {
	case in, ok := <-c.In():
		if !ok {
			t.Fatal("In() closed")
		}
		return in
	case <-time.After(wait):
		t.Fatalf("nothing received within %v", wait)
	}
	panic("unreachable")
}

func recvMsg(t *testing.T, c *Conn) Incoming {
	t.Helper()
	in := recv(t, c)
	if in.Err != nil {
		t.Fatalf("received an error from %q: %v", in.From, in.Err)
	}
	if in.At.IsZero() {
		t.Error("Incoming.At not set")
	}
	return in
}

func hello(id int) *proto.Message {
	return &proto.Message{Kind: proto.KindHello, Seq: 1, Hello: &proto.Hello{Version: proto.Version, LockerID: id, Role: "locker", PID: 1000 + id}}
}

func TestRouterAndDealersBothWays(t *testing.T) {
	r := listen(t)
	dealers := map[string]*Conn{"locker-1": dial(t, r, "locker-1"), "locker-2": dial(t, r, "locker-2")}
	ids := map[string]int{"locker-1": 1, "locker-2": 2}

	for id, d := range dealers {
		if err := d.Send(hello(ids[id])); err != nil {
			t.Fatal(err)
		}
	}
	for range dealers {
		in := recvMsg(t, r)
		want, ok := ids[in.From]
		if !ok || in.Msg.Kind != proto.KindHello || in.Msg.Hello.LockerID != want {
			t.Fatalf("router got %+v from %q", in.Msg, in.From)
		}
	}

	// The router answers each by identity, several messages in a row; each dealer must get
	// exactly its own, in order.
	const n = 20
	for i := 1; i <= n; i++ {
		for id := range dealers {
			m := &proto.Message{Kind: proto.KindPong, Seq: uint64(i), Pong: &proto.Pong{T1: int64(ids[id]), TC: int64(i)}}
			if err := r.SendTo(id, m); err != nil {
				t.Fatalf("SendTo %s: %v", id, err)
			}
		}
	}
	for id, d := range dealers {
		for i := 1; i <= n; i++ {
			in := recvMsg(t, d)
			if in.From != "" {
				t.Errorf("dealer side From = %q, want empty", in.From)
			}
			p := in.Msg.Pong
			if in.Msg.Kind != proto.KindPong || p.T1 != int64(ids[id]) || p.TC != int64(i) || in.Msg.Seq != uint64(i) {
				t.Fatalf("%s got %+v %+v, want pong %d of locker %d", id, in.Msg, p, i, ids[id])
			}
		}
	}

	// And dealers to the router again, after the replies: the router keeps per-dealer order.
	for id, d := range dealers {
		for i := 2; i <= n; i++ {
			if err := d.Send(&proto.Message{Kind: proto.KindPing, Seq: uint64(i), Ping: &proto.Ping{T1: int64(ids[id])}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	next := map[string]uint64{"locker-1": 2, "locker-2": 2}
	for range 2 * (n - 1) {
		in := recvMsg(t, r)
		if in.Msg.Kind != proto.KindPing || in.Msg.Ping.T1 != int64(ids[in.From]) || in.Msg.Seq != next[in.From] {
			t.Fatalf("router got %+v (seq %d) from %q, want ping seq %d", in.Msg.Ping, in.Msg.Seq, in.From, next[in.From])
		}
		next[in.From]++
	}
}

func TestMalformedFrameArrivesAsError(t *testing.T) {
	r := listen(t)
	raw := zmq4.NewDealer(t.Context(), zmq4.WithID(zmq4.SocketIdentity("raw")))
	defer raw.Close()
	if err := raw.Dial(r.RemoteEndpoint()); err != nil {
		t.Fatal(err)
	}
	good, err := proto.Encode(hello(9))
	if err != nil {
		t.Fatal(err)
	}
	badVersion := append([]byte{}, good...)
	badVersion[2] = proto.Version + 1
	sends := []struct {
		name string
		msg  zmq4.Msg
		want string // "" = a valid message
	}{
		{"garbage", zmq4.NewMsgString("GET / HTTP/1.1\r\n"), "bad magic"},
		{"empty", zmq4.NewMsg([]byte{}), "shorter than"},
		{"other version", zmq4.NewMsg(badVersion), "protocol version"},
		{"two frames", zmq4.NewMsgFrom(good, good), "message of 2 frames"},
		{"valid after all that", zmq4.NewMsg(good), ""},
	}
	for _, s := range sends {
		var err error
		if len(s.msg.Frames) > 1 {
			err = raw.SendMulti(s.msg)
		} else {
			err = raw.Send(s.msg)
		}
		if err != nil {
			t.Fatalf("%s: send: %v", s.name, err)
		}
	}
	for _, s := range sends {
		in := recv(t, r)
		if in.From != "raw" {
			t.Errorf("%s: From = %q, want raw", s.name, in.From)
		}
		switch {
		case s.want == "" && in.Err != nil:
			t.Errorf("%s: %v", s.name, in.Err)
		case s.want == "" && (in.Msg == nil || in.Msg.Hello.LockerID != 9):
			t.Errorf("%s: got %+v", s.name, in.Msg)
		case s.want != "" && (in.Err == nil || in.Msg != nil):
			t.Errorf("%s: Msg %+v, Err %v; want only an error", s.name, in.Msg, in.Err)
		case s.want != "" && !strings.Contains(in.Err.Error(), s.want):
			t.Errorf("%s: error %q does not contain %q", s.name, in.Err, s.want)
		}
	}
}

// A message to an identity that has not connected (yet, or any more) is refused with ErrNoPeer
// at once (zmq4's ROUTER dropped it silently, after waiting up to its socket timeout for a
// first connection). The protocol still never sends to a locker before its hello has arrived.
func TestRouterRefusesUnknownIdentity(t *testing.T) {
	r := listen(t)
	d := dial(t, r, "locker-1")
	if err := d.Send(hello(1)); err != nil {
		t.Fatal(err)
	}
	recvMsg(t, r)

	err := r.SendTo("nobody", &proto.Message{Kind: proto.KindStop, Seq: 1, Stop: &proto.Stop{Reason: "lost"}})
	if !errors.Is(err, ErrNoPeer) {
		t.Errorf("SendTo an unknown identity: %v, want ErrNoPeer", err)
	}

	// The known dealer gets only what was sent to it.
	if err := r.SendTo("locker-1", &proto.Message{Kind: proto.KindBeat, Seq: 2, Beat: &proto.Beat{}}); err != nil {
		t.Fatal(err)
	}
	if in := recvMsg(t, d); in.Msg.Kind != proto.KindBeat || in.Msg.Seq != 2 {
		t.Errorf("dealer got %+v, want the beat (the stop to nobody must not leak to it)", in.Msg)
	}
}

// A second DEALER that claims an identity already connected is turned away at the gate: zmq4
// would deliver a message for that identity to both. The first keeps its connection.
func TestDuplicateIdentityRefused(t *testing.T) {
	r := listen(t)
	a := dial(t, r, "locker-1")
	if err := a.Send(hello(1)); err != nil {
		t.Fatal(err)
	}
	recvMsg(t, r)
	if b, err := Dial(t.Context(), r.RemoteEndpoint(), "locker-1"); err == nil {
		b.Close()
		t.Fatal("a second DEALER with the same identity was admitted")
	}
	if err := r.SendTo("locker-1", &proto.Message{Kind: proto.KindBeat, Seq: 1, Beat: &proto.Beat{}}); err != nil {
		t.Fatal(err)
	}
	if in := recvMsg(t, a); in.Msg.Kind != proto.KindBeat {
		t.Errorf("first dealer got %+v", in.Msg)
	}
}

// closeWithin runs Close and fails the test if it has not returned by the deadline.
func closeWithin(t *testing.T, c *Conn) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
	// In() is closed once the reader stopped; what was buffered can still be drained.
	deadline := time.After(wait)
	for {
		select {
		case _, ok := <-c.In():
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("In() not closed after Close")
		}
	}
}

func TestCloseWithNobodyReading(t *testing.T) {
	r := listen(t)
	d := dial(t, r, "flood")
	// Fill the ROUTER's In() buffer so that its reader blocks on the channel, not on the socket.
	n := cap(r.in) + 50
	for i := 1; i <= n; i++ {
		if err := d.Send(&proto.Message{Kind: proto.KindPing, Seq: uint64(i), Ping: &proto.Ping{T1: int64(i)}}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(wait)
	for len(r.In()) < cap(r.in) {
		if time.Now().After(deadline) {
			t.Fatalf("In() holds %d of %d after %v", len(r.In()), cap(r.in), wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	closeWithin(t, r)
	closeWithin(t, d) // the dealer too, its In() never read either
}

func TestCloseIdleConns(t *testing.T) {
	r := listen(t)
	d := dial(t, r, "idle")
	closeWithin(t, d)
	closeWithin(t, r)
	if err := d.Send(hello(1)); err == nil {
		t.Error("Send on a closed dealer succeeded")
	}
}

// A peer that left just before Close must not turn Close into an error: zmq4 closes the
// peer's connection itself and removes it later, so Close meets it closed already (this
// once failed about one run in twenty as "use of closed network connection").
func TestClosePeerGoneFirst(t *testing.T) {
	for i := range 10 {
		r := listen(t)
		d := dial(t, r, fmt.Sprintf("gone-%d", i))
		if err := d.Send(hello(1)); err != nil {
			t.Fatal(err)
		}
		recvMsg(t, r)
		closeWithin(t, d)
		closeWithin(t, r)
	}
}

func TestDialAndListenErrors(t *testing.T) {
	if _, err := Listen(t.Context(), ListenOptions{TCP: "bogus://x"}); err == nil {
		t.Error("Listen on an unknown transport succeeded")
	}
	if _, err := Dial(t.Context(), "bogus://x", "id"); err == nil {
		t.Error("Dial on an unknown transport succeeded")
	}
	r := listen(t)
	if _, err := Listen(t.Context(), ListenOptions{TCP: r.RemoteEndpoint()}); err == nil {
		t.Error("a second Listen on the same port succeeded")
	}
	if err := r.SendTo("x", &proto.Message{Kind: proto.KindPing}); err == nil || !strings.Contains(err.Error(), "nil payload") {
		t.Errorf("SendTo of an unencodable message: %v", err)
	}
}
