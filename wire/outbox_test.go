package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/proto"
)

// readFrame reads one ZMTP frame (after the handshake) and returns its flags and body.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	fl, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	var size uint64
	if fl&flagLong != 0 {
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		size = binary.BigEndian.Uint64(b[:])
	} else {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		size = uint64(b)
	}
	body := make([]byte, size)
	_, err = io.ReadFull(r, body)
	return fl, body, err
}

func pong(i int) *proto.Message {
	return &proto.Message{Kind: proto.KindPong, Seq: uint64(i), Pong: &proto.Pong{T1: int64(i), TC: int64(i)}}
}

// TestSlowPeerDoesNotStallOthers: a peer that completes its handshake, says hello and then reads
// nothing fills its own outbox only. SendTo to it never waits (zmq4's ROUTER blocked on such a
// peer, holding the socket's lock: every send to every peer waited behind it, 10 s per write);
// past the bound it says ErrNotReading; a reading DEALER gets what is sent to it meanwhile;
// and once the slow peer reads, every message that was queued reaches it whole and in order.
func TestSlowPeerDoesNotStallOthers(t *testing.T) {
	r, err := Listen(t.Context(), ListenOptions{Gate: GateOptions{MaxQueued: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	slow := rawConn(t, r.LocalEndpoint())
	frame, err := proto.Encode(hello(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Write(append(append(validHandshake("slow"), 0, byte(len(frame))), frame...)); err != nil {
		t.Fatal(err)
	}
	d, err := Dial(t.Context(), r.LocalEndpoint(), "reader")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Send(hello(2)); err != nil {
		t.Fatal(err)
	}
	for seen := map[string]bool{}; len(seen) < 2; {
		in := recvMsg(t, r)
		seen[in.From] = true
		r.Trust(in.From)
	}

	// Everything below runs on a goroutine so that a SendTo that blocks fails the test by its
	// deadline instead of hanging it.
	type outcome struct {
		queued int
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		for i := 1; i <= 1_000_000; i++ {
			if err := r.SendTo("slow", pong(i)); err != nil {
				done <- outcome{i - 1, err}
				return
			}
			if i%100 == 0 {
				if err := r.SendTo("reader", pong(i)); err != nil {
					done <- outcome{i, err}
					return
				}
			}
		}
		done <- outcome{1_000_000, nil}
	}()
	var got outcome
	select {
	case got = <-done:
	case <-time.After(wait):
		t.Fatalf("SendTo still sending after %v: it waits for a peer that does not read", wait)
	}
	if !errors.Is(got.err, ErrNotReading) {
		t.Fatalf("after %d messages queued for the slow peer: %v, want ErrNotReading", got.queued, got.err)
	}
	if q := r.Queued("slow"); q == 0 || q > 64<<10 {
		t.Errorf("Queued(slow) = %d, want between 1 and the bound", q)
	}
	// The reading DEALER got each of its messages, in order, while the slow one read nothing.
	for i := 100; i <= got.queued; i += 100 {
		if in := recvMsg(t, d); in.Msg.Kind != proto.KindPong || in.Msg.Seq != uint64(i) {
			t.Fatalf("reader got %+v, want pong %d", in.Msg, i)
		}
	}
	// The slow peer reads at last: the greeting, zmq4's READY, then every queued pong whole.
	_ = slow.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(slow)
	if _, err := io.ReadFull(br, make([]byte, greetingSize)); err != nil {
		t.Fatal(err)
	}
	if fl, _, err := readFrame(br); err != nil || fl&flagCommand == 0 {
		t.Fatalf("READY: flags %#x, %v", fl, err)
	}
	for i := 1; i <= got.queued; i++ {
		fl, body, err := readFrame(br)
		if err != nil {
			t.Fatalf("pong %d of %d: %v", i, got.queued, err)
		}
		m, err := proto.Decode(body)
		if fl != 0 && fl != flagLong || err != nil || m.Kind != proto.KindPong || m.Seq != uint64(i) {
			t.Fatalf("frame %d: flags %#x, %+v, %v; want pong %d", i, fl, m, err, i)
		}
	}
	t.Logf("%d messages queued for the slow peer before ErrNotReading", got.queued)
}

// pipePeer is an outbox on one end of a net.Pipe, whose writes block until the other end reads.
func pipePeer(t *testing.T, timeout time.Duration, limit int) (*outbox, net.Conn) {
	t.Helper()
	ours, theirs := net.Pipe()
	gc := newGatedConn(ours, &stream{identity: "p"}, timeout, true)
	gc.out = newOutbox(gc, limit)
	t.Cleanup(func() { gc.Close(); theirs.Close() })
	return gc.out, theirs
}

func encode(t *testing.T, m *proto.Message) []byte {
	t.Helper()
	b, err := proto.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOutboxCoalescesBeats: beats to a peer that does not read never pile up: one is being
// written, one waits, and the others are that one — also a beat sent after another message,
// since any message tells the peer what a beat does.
func TestOutboxCoalescesBeats(t *testing.T) {
	o, theirs := pipePeer(t, wait, 1<<20)
	beat := encode(t, &proto.Message{Kind: proto.KindBeat, Beat: &proto.Beat{}})
	for range 1000 {
		if err := o.put(proto.KindBeat, beat); err != nil {
			t.Fatal(err)
		}
	}
	if q := o.queued(); q > 2*len(beat) {
		t.Errorf("%d bytes queued after 1000 beats, want at most two beats (%d)", q, 2*len(beat))
	}
	p := encode(t, pong(1))
	if err := o.put(proto.KindPong, p); err != nil {
		t.Fatal(err)
	}
	if err := o.put(proto.KindBeat, beat); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(theirs)
	var got []string
	_ = theirs.SetReadDeadline(time.Now().Add(wait))
	for len(got) == 0 || got[len(got)-1] != "pong" {
		_, body, err := readFrame(br)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, proto.FrameKind(body).String())
	}
	// Whether the writer took the first beat before the second came decides whether one or
	// two were written; never more, and nothing after the pong.
	if s := strings.Join(got, " "); s != "beat beat pong" && s != "beat pong" {
		t.Errorf("frames written: %s; want one or two beats, then the pong", s)
	}
	for deadline := time.Now().Add(wait); o.queued() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if q := o.queued(); q != 0 {
		t.Errorf("%d bytes still queued after the pong: the last beat was queued behind it", q)
	}
}

// TestOutboxWriteTimeoutClosesTheConnection: a write the peer does not take within the timeout
// leaves a frame cut short, which nothing can finish: the connection is closed and the outbox
// takes nothing more.
func TestOutboxWriteTimeoutClosesTheConnection(t *testing.T) {
	o, theirs := pipePeer(t, 100*time.Millisecond, 1<<20)
	if err := o.put(proto.KindPong, encode(t, pong(1))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	var err error
	for err == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		err = o.put(proto.KindPong, encode(t, pong(2)))
	}
	if err == nil || errors.Is(err, ErrNotReading) {
		t.Fatalf("put after the write timed out: %v, want the write's error", err)
	}
	_ = theirs.SetReadDeadline(time.Now().Add(wait))
	if _, rerr := io.ReadAll(theirs); rerr != nil {
		t.Errorf("peer's end: %v, want EOF (closed)", rerr)
	}
	select {
	case <-o.flushed():
	default:
		t.Error("a flush would wait for an outbox whose connection is closed")
	}
}

// TestGonePeerIsReadToTheEnd: a peer sends, closes its end and goes while what it sent still
// waits unread on the ROUTER's side; a write to it then fails (EPIPE). What it sent must still
// be read: its goodbye and last records are there. Closing the whole connection on that write
// error threw them away (a 1000-locker run lost hundreds of goodbyes).
func TestGonePeerIsReadToTheEnd(t *testing.T) {
	r := listen(t)
	d, err := Dial(t.Context(), r.LocalEndpoint(), "gone")
	if err != nil {
		t.Fatal(err)
	}
	// Send until the ROUTER's queues and the socket are full (nobody reads r yet), so that the
	// last messages sit in the kernel when the peer goes.
	sent := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 20000; i++ {
			m := hello(1)
			m.Seq = uint64(i)
			if d.Send(m) != nil {
				return
			}
			sent = i
		}
	}()
	select {
	case <-done:
		t.Fatal("20000 messages went through with nobody reading: the test cannot leave any unread")
	case <-time.After(time.Second):
	}
	d.Close() // the blocked Send fails, the end is closed
	<-done
	deadline := time.Now().Add(wait)
	for r.SendTo("gone", pong(1)) == nil {
		if time.Now().After(deadline) {
			t.Fatal("sends to a peer that closed its end never failed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := 0
	for got < sent {
		select {
		case in, ok := <-r.In():
			if !ok {
				t.Fatalf("In() closed after %d of %d messages", got, sent)
			}
			if in.Err == nil && in.From == "gone" && in.Msg.Kind == proto.KindHello {
				got++
			}
		case <-time.After(wait):
			t.Fatalf("%d of the %d messages sent by the gone peer were read", got, sent)
		}
	}
}
