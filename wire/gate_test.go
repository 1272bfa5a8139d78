package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/proto"
)

// Hostile clients: small raw-TCP programs that speak just enough ZMTP to reach the code zmq4
// v0.17.0 trusts. Each is followed by a real DEALER that must still get through.

func greeting() []byte { return append([]byte(nil), zmq4Greeting...) }

// command frames a ZMTP command with a raw body (name and properties as given).
func command(body []byte) []byte {
	if len(body) > 255 {
		hdr := make([]byte, 9)
		hdr[0] = flagCommand | flagLong
		binary.BigEndian.PutUint64(hdr[1:], uint64(len(body)))
		return append(hdr, body...)
	}
	return append([]byte{flagCommand, byte(len(body))}, body...)
}

func prop(k, v string) []byte {
	b := append([]byte{byte(len(k))}, k...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func ready(props ...[]byte) []byte {
	body := append([]byte{5}, "READY"...)
	for _, p := range props {
		body = append(body, p...)
	}
	return command(body)
}

// validHandshake is what a DEALER with identity id sends before its first message.
func validHandshake(id string) []byte {
	return append(greeting(), ready(prop("Socket-Type", "DEALER"), prop("Identity", id))...)
}

func rawConn(t *testing.T, endpoint string) net.Conn {
	t.Helper()
	network, addr := "tcp", strings.TrimPrefix(endpoint, "tcp://")
	if a, ok := strings.CutPrefix(endpoint, "ipc://"); ok {
		network, addr = "unix", a
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByGate says whether the gate dropped c: a read ends in EOF or a reset within wait,
// after whatever greeting and READY the gate sent.
func closedByGate(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("connection still open after %v", wait)
	}
	return nil
}

// stillServes checks that a real DEALER can still join and talk.
func stillServes(t *testing.T, r *Conn, id string) {
	t.Helper()
	d := dial(t, r, id)
	if err := d.Send(hello(7)); err != nil {
		t.Fatal(err)
	}
	for {
		in := recv(t, r)
		if in.From == id {
			if in.Err != nil || in.Msg.Kind != proto.KindHello {
				t.Fatalf("from %s: %+v %v", id, in.Msg, in.Err)
			}
			break
		}
	}
	r.Trust(id)
	if err := r.SendTo(id, &proto.Message{Kind: proto.KindBeat, Seq: 1, Beat: &proto.Beat{}}); err != nil {
		t.Fatal(err)
	}
	if in := recvMsg(t, d); in.Msg.Kind != proto.KindBeat {
		t.Fatalf("dealer got %+v", in.Msg)
	}
}

// TestGateRejectsHostileHandshakes: each of these once panicked zmq4 inside the controller or
// made it allocate what the peer declared. The gate drops the connection; the ROUTER lives on.
func TestGateRejectsHostileHandshakes(t *testing.T) {
	cases := []struct {
		name string
		send []byte
	}{
		// The adversarial pass's crash: READY whose metadata is 2 bytes (zmq4: slice bounds out of range).
		{"ready metadata cut short", append(greeting(), []byte("\x04\x08\x05READY\x01A")...)},
		{"ready value longer than the command", append(greeting(), ready([]byte("\x0bSocket-Type\x7f\xff\xff\xffDEALER"))...)},
		{"ready declares 2^62 bytes", append(greeting(), []byte{flagCommand | flagLong, 0x40, 0, 0, 0, 0, 0, 0, 0}...)},
		{"ready of 1 MiB", append(greeting(), command(bytes.Repeat([]byte("x"), 1<<20))...)},
		{"ready without identity", append(greeting(), ready(prop("Socket-Type", "DEALER"))...)},
		{"ready of a PUB socket", append(greeting(), ready(prop("Socket-Type", "PUB"), prop("Identity", "x"))...)},
		{"not a command first", append(greeting(), 0x00, 0x01, 'x')},
		{"other command first", append(greeting(), command(append([]byte{4}, "PING"...))...)},
		{"reserved flag bits", append(greeting(), 0x80, 0x00)},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat(" ", 64))},
		{"zmtp 2", func() []byte { g := greeting(); g[10] = 2; return g }()},
		{"curve", func() []byte {
			g := greeting()
			copy(g[12:32], "CURVE\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
			return g
		}()},
		// After a sound handshake, before the controller trusts the peer.
		{"frame of 2^62 bytes", append(validHandshake("h1"), 0x02, 0x40, 0, 0, 0, 0, 0, 0, 0)},
		{"frame of 2^63 bytes", append(validHandshake("h2"), 0x02, 0x80, 0, 0, 0, 0, 0, 0, 0)},
		{"untrusted 1 MiB frame", append(validHandshake("h3"), 0x02, 0, 0, 0, 0, 0, 0x10, 0, 0)},
		{"endless message", append(validHandshake("h4"), bytes.Repeat([]byte{flagMore, 0}, 10)...)},
		{"command of 1 MiB", append(validHandshake("h5"), flagCommand|flagLong, 0, 0, 0, 0, 0, 0x10, 0, 0)},
	}
	r := listen(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := rawConn(t, r.RemoteEndpoint())
			// The gate may hang up before all is written (it read enough): that is a pass too.
			_, _ = conn.Write(c.send)
			if err := closedByGate(conn); err != nil {
				t.Error(err)
			}
		})
	}
	stillServes(t, r, "after-hostile")
}

// TestGateIdleConnectionsDoNotBlock: zmq4 runs each handshake in its one accept loop without a
// deadline, so one idle connection kept every locker out ("not ready within 15s"). Through the
// gate, a DEALER joins while a thousand strangers sit idle, and each of them is dropped when
// its handshake time is up.
func TestGateIdleConnectionsDoNotBlock(t *testing.T) {
	r, err := Listen(t.Context(), ListenOptions{TCP: "tcp://127.0.0.1:0", Gate: GateOptions{Handshake: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	var idle []net.Conn
	for i := 0; i < 1000; i++ {
		idle = append(idle, rawConn(t, r.RemoteEndpoint()))
	}
	// One that sends half a greeting and stops, one that sends a sound handshake and stops.
	half := rawConn(t, r.RemoteEndpoint())
	half.Write(greeting()[:30])
	silent := rawConn(t, r.RemoteEndpoint())
	silent.Write(validHandshake("silent"))
	t0 := time.Now()
	stillServes(t, r, "joins-while-idle")
	t.Logf("a DEALER joined and exchanged messages in %v beside 1002 idle strangers", time.Since(t0).Round(time.Microsecond))
	for _, c := range append(idle[:3], half) {
		if err := closedByGate(c); err != nil {
			t.Errorf("idle stranger: %v", err)
		}
	}
	_ = silent
}

// TestGateDropsUntrustedAfterTrustTimeout: a stranger that completes the handshake but never
// presents an accepted hello is closed; a trusted member is not.
func TestGateDropsUntrustedAfterTrustTimeout(t *testing.T) {
	r, err := Listen(t.Context(), ListenOptions{TCP: "tcp://127.0.0.1:0", Gate: GateOptions{Trust: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	stranger := rawConn(t, r.RemoteEndpoint())
	if _, err := stranger.Write(validHandshake("stranger")); err != nil {
		t.Fatal(err)
	}
	member := dial(t, r, "member")
	if err := member.Send(hello(1)); err != nil {
		t.Fatal(err)
	}
	for in := recv(t, r); in.From != "member"; in = recv(t, r) {
	}
	r.Trust("member")
	if err := closedByGate(stranger); err != nil {
		t.Error(err)
	}
	// A trusted member may send a message far larger than a stranger's limit.
	big := hello(2)
	big.Hello.Files = []string{strings.Repeat("f", 1<<20)}
	if err := member.Send(big); err != nil {
		t.Fatal(err)
	}
	if in := recvMsg(t, r); in.From != "member" || len(in.Msg.Hello.Files[0]) != 1<<20 {
		t.Errorf("large message from a trusted member did not arrive whole: from %q", in.From)
	}
}

// TestGateUnixSocketIsPrivate: the members on this host connect over a Unix socket in a folder
// only this user can open; another user cannot even reach the socket.
func TestGateUnixSocketIsPrivate(t *testing.T) {
	r, err := Listen(t.Context(), ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.RemoteEndpoint() != "" {
		t.Errorf("RemoteEndpoint() = %q without TCP asked", r.RemoteEndpoint())
	}
	path := strings.TrimPrefix(r.LocalEndpoint(), "ipc://")
	st, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("socket folder mode %v, want 0700", st.Mode().Perm())
	}
	d, err := Dial(t.Context(), r.LocalEndpoint(), "local")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Send(hello(1)); err != nil {
		t.Fatal(err)
	}
	if in := recvMsg(t, r); in.From != "local" {
		t.Errorf("From = %q", in.From)
	}
	if os.Geteuid() == 0 {
		// The test binary again, as nobody, trying to connect (from a folder nobody may read).
		dir, err := os.MkdirTemp("", "lockprobe-wire-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "wire.test")
		exe, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, exe, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-test.run=^TestHelperConnectUnix$")
		cmd.Dir = "/"
		cmd.Env = append(os.Environ(), "LOCKPROBE_HELPER_SOCKET="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "permission denied") {
			t.Errorf("another user connecting: %v: %s; want permission denied", err, out)
		}
	}
	d.Close()
	closeWithin(t, r)
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket folder left behind after Close: %v", err)
	}
}

func TestHelperConnectUnix(t *testing.T) {
	path := os.Getenv("LOCKPROBE_HELPER_SOCKET")
	if path == "" {
		t.Skip("helper of TestGateUnixSocketIsPrivate")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Close()
	fmt.Println("connected")
}

// TestStreamAcceptsWhatZmq4Sends: the stream check passes a real handshake and messages of
// every size class, in pieces of any length.
func TestStreamAcceptsWhatZmq4Sends(t *testing.T) {
	var all []byte
	all = append(all, validHandshake("a")...)
	all = append(all, 0x00, 3, 'a', 'b', 'c')                   // short frame
	all = append(all, flagMore, 1, 'x', 0x00, 2, 'y', 'z')      // two-part message
	all = append(all, flagLong, 0, 0, 0, 0, 0, 0, 1, 0)         // 256-byte frame
	all = append(all, bytes.Repeat([]byte{'q'}, 256)...)        //
	all = append(all, command(append([]byte{4}, "PING"...))...) // a command between messages
	for _, piece := range []int{1, 2, 3, 7, 64, 100, len(all)} {
		handed, held, err := scanPieces(all, piece)
		if err != nil || handed != len(all) || len(held) != 0 {
			t.Errorf("pieces of %d: handed %d of %d, %d held, %v", piece, handed, len(all), len(held), err)
		}
	}
}
