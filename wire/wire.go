// Package wire carries proto frames over ZeroMQ (github.com/go-zeromq/zmq4): the controller's
// ROUTER and each locker's DEALER. zmq4's Recv has no deadline, so each Conn runs one reader
// goroutine that hands frames to a channel; callers select on it with their own deadlines.
// zmq4's ROUTER silently drops a message for an identity that has not connected, so the
// protocol above never sends to a locker before its hello has arrived.
//
// The ROUTER listens on a Unix socket in a folder only this user can open (members on this
// host) and, when asked, on TCP (members on other nodes); both go through the gate (gate.go),
// which checks every byte a peer sends before zmq4 sees it.
package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/lockprobe/lockprobe/proto"
)

// Incoming is one received message, or a frame that did not decode.
type Incoming struct {
	From string // the DEALER identity (ROUTER side only)
	Msg  *proto.Message
	Err  error
	At   time.Time // when the reader took it off the socket
}

// Conn is a socket with a reader goroutine. A ROUTER's writes are wire's own (outbox.go).
type Conn struct {
	sock   zmq4.Socket
	router bool
	in     chan Incoming
	sendMu sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	closeOnce sync.Once
	closeErr  error

	// ROUTER only.
	gate          *gate
	local, remote string // endpoints: ipc:// for this host's members, tcp:// for other nodes'
	ipcDir        string
	removeIPCDir  bool // we made the folder: Close removes it
}

// quietLogger keeps zmq4's reconnect chatter out of the user's terminal.
var quietLogger = log.New(io.Discard, "", 0)

// ListenOptions say where a ROUTER listens. Every field is optional.
type ListenOptions struct {
	// TCP is a tcp://HOST:PORT endpoint for members on other nodes (port 0: any free one).
	// Optional: none; members on this host connect over the Unix socket only.
	TCP string
	// IPCDir is the folder of the Unix socket; it must exist and be open to its owner only.
	// Optional: a new folder under the system's temporary folder, removed at Close.
	IPCDir string
	// Gate bounds what a connection may cost before it is trusted.
	Gate GateOptions
}

// ErrEndpoint marks an endpoint that is not of a form lockprobe can use.
var ErrEndpoint = errors.New("bad endpoint")

// socketName is the Unix socket's name in its folder.
const socketName = "controller.sock"

// maxSocketPath is the room for a Unix socket's path (sun_path: 108 bytes with its NUL).
const maxSocketPath = 107

// Listen binds a ROUTER: a Unix socket for this host's members and, if asked, a TCP port.
func Listen(ctx context.Context, o ListenOptions) (*Conn, error) {
	if err := registerTransports(); err != nil {
		return nil, err
	}
	var hostPort string
	if o.TCP != "" {
		hp, ok := strings.CutPrefix(o.TCP, "tcp://")
		if _, _, err := net.SplitHostPort(hp); !ok || err != nil {
			return nil, fmt.Errorf("listen %s: %w: want tcp://HOST:PORT", o.TCP, ErrEndpoint)
		}
		hostPort = hp
	}
	dir, made, err := ipcDir(o.IPCDir)
	if err != nil {
		return nil, err
	}
	var inner []net.Listener
	fail := func(err error) (*Conn, error) {
		for _, l := range inner {
			l.Close()
		}
		if made {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	path := filepath.Join(dir, socketName)
	ul, err := net.Listen("unix", path)
	if err != nil {
		return fail(fmt.Errorf("listen on %s: %w", path, err))
	}
	inner = append(inner, ul)
	remote := ""
	if hostPort != "" {
		tl, err := net.Listen("tcp", hostPort)
		if err != nil {
			return fail(fmt.Errorf("listen %s: %w", o.TCP, err))
		}
		inner = append(inner, tl)
		remote = "tcp://" + tl.Addr().String()
	}
	g := newGate(o.Gate, inner...)
	ctx, cancel := context.WithCancel(ctx)
	sock := zmq4.NewRouter(ctx, zmq4.WithLogger(quietLogger), zmq4.WithTimeout(5*time.Second))
	if err := sock.Listen(offer(g)); err != nil {
		cancel()
		g.Close()
		return fail(fmt.Errorf("listen: %w", err))
	}
	c := start(ctx, sock, true, cancel)
	c.gate, c.local, c.remote, c.ipcDir, c.removeIPCDir = g, "ipc://"+path, remote, dir, made
	return c, nil
}

// ipcDir returns the folder for the Unix socket, making a private one when none is given.
func ipcDir(dir string) (string, bool, error) {
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return "", false, fmt.Errorf("socket folder: %w", err)
		}
		if !st.IsDir() || st.Mode().Perm()&0o077 != 0 {
			return "", false, fmt.Errorf("socket folder %s: want a folder only its owner can open (mode 0700)", dir)
		}
		if len(filepath.Join(dir, socketName)) > maxSocketPath {
			return "", false, fmt.Errorf("socket folder %s: path too long for a Unix socket", dir)
		}
		return dir, false, nil
	}
	var errs []error
	for _, base := range []string{os.TempDir(), "/tmp"} {
		if len(base)+len("/lockprobe-0123456789/"+socketName) > maxSocketPath {
			continue
		}
		d, err := os.MkdirTemp(base, "lockprobe-") // mode 0700
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return d, true, nil
	}
	return "", false, fmt.Errorf("no folder for the controller's socket: %w", errors.Join(errs...))
}

// Dial connects a DEALER with an explicit identity to endpoint (tcp://HOST:PORT or ipc:///PATH).
func Dial(ctx context.Context, endpoint, identity string) (*Conn, error) {
	if err := registerTransports(); err != nil {
		return nil, err
	}
	ep, err := dialEndpoint(endpoint)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	sock := zmq4.NewDealer(ctx, zmq4.WithID(zmq4.SocketIdentity(identity)), zmq4.WithLogger(quietLogger),
		zmq4.WithDialerRetry(100*time.Millisecond), zmq4.WithDialerMaxRetries(50), zmq4.WithTimeout(5*time.Second))
	if err := sock.Dial(ep); err != nil {
		cancel()
		return nil, fmt.Errorf("dial %s: %w", endpoint, err)
	}
	return start(ctx, sock, false, cancel), nil
}

func start(ctx context.Context, sock zmq4.Socket, router bool, cancel context.CancelFunc) *Conn {
	c := &Conn{sock: sock, router: router, in: make(chan Incoming, 4096), cancel: cancel, done: make(chan struct{})}
	go c.read(ctx)
	return c
}

// LocalEndpoint is where members on this host connect: the ROUTER's Unix socket, ipc:///PATH.
func (c *Conn) LocalEndpoint() string { return c.local }

// RemoteEndpoint is where members on other nodes connect, tcp://HOST:PORT; "" when the ROUTER
// does not listen on TCP.
func (c *Conn) RemoteEndpoint() string { return c.remote }

// Trust lifts a stranger's limits from the connection of identity: the controller accepted its
// hello. A connection not trusted within GateOptions.Trust is closed.
func (c *Conn) Trust(identity string) {
	if c.gate == nil {
		return
	}
	if gc := c.gate.conn(identity); gc != nil {
		gc.trusted.Store(true)
	}
}

// Drop closes the connection of identity after a grace period in which what was just sent to
// it (a refusal) can still reach it: closing at once, with its unread data, resets it.
func (c *Conn) Drop(identity string, after time.Duration) {
	if c.gate == nil {
		return
	}
	if gc := c.gate.conn(identity); gc != nil {
		time.AfterFunc(after, func() { gc.Close() })
	}
}

func (c *Conn) Backlog() int { return len(c.in) }

// In delivers received messages; it is closed when the socket closes.
func (c *Conn) In() <-chan Incoming { return c.in }

func (c *Conn) read(ctx context.Context) {
	defer close(c.done)
	defer close(c.in)
	for {
		msg, err := c.sock.Recv()
		if err != nil {
			return
		}
		now := time.Now()
		in := Incoming{At: now}
		frames := msg.Frames
		if c.router {
			if len(frames) < 2 {
				continue
			}
			in.From = string(frames[0])
			frames = frames[1:]
		}
		if len(frames) != 1 {
			in.Err = fmt.Errorf("message of %d frames, want 1", len(frames))
		} else {
			in.Msg, in.Err = proto.Decode(frames[0])
		}
		select {
		case c.in <- in:
		case <-ctx.Done():
			return
		}
	}
}

// Send sends one message (DEALER side).
func (c *Conn) Send(m *proto.Message) error {
	frame, err := proto.Encode(m)
	if err != nil {
		return err
	}
	if c.router {
		return errors.New("send: a ROUTER sends to an identity (SendTo)")
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := c.sock.Send(zmq4.NewMsg(frame)); err != nil {
		return fmt.Errorf("send %s: %w", m.Kind, err)
	}
	return nil
}

// SendTo queues one message for the DEALER with identity to (ROUTER side) and returns at once:
// the peer's connection writes it (outbox.go). It fails with ErrNoPeer when no connection has
// that identity, and with ErrNotReading when the peer's outbox is full.
func (c *Conn) SendTo(to string, m *proto.Message) error {
	frame, err := proto.Encode(m)
	if err != nil {
		return err
	}
	return c.SendFrameTo(to, frame)
}

// SendFrameTo is SendTo of a message encoded already (proto.Encode): one that goes out more
// than once (a queue resent) is encoded once. The frame must not change afterwards.
func (c *Conn) SendFrameTo(to string, frame []byte) error {
	kind := proto.FrameKind(frame)
	if !c.router {
		return fmt.Errorf("send %s: a DEALER sends to its ROUTER (Send)", kind)
	}
	gc := c.gate.conn(to)
	if gc == nil {
		return fmt.Errorf("send %s to %q: %w", kind, to, ErrNoPeer)
	}
	if err := gc.out.put(kind, frame); err != nil {
		return fmt.Errorf("send %s to %q: %w", kind, to, err)
	}
	return nil
}

// Broadcast queues frame (proto.Encode) for every peer the controller has trusted (Trust): its
// accepted members still connected. A peer that is not reading does not get it; that is no error
// here (a beat to it says nothing its other messages would not).
func (c *Conn) Broadcast(frame []byte) {
	if c.gate == nil {
		return
	}
	kind := proto.FrameKind(frame)
	for _, gc := range c.gate.trusted() {
		_ = gc.out.put(kind, frame)
	}
}

// Connected says a connection with identity is open: its reader has not met the end of its
// stream yet.
func (c *Conn) Connected(identity string) bool {
	return c.gate != nil && c.gate.conn(identity) != nil
}

// Queued is how many bytes sent to identity have not been written to its connection yet.
func (c *Conn) Queued(identity string) int {
	if c.gate == nil {
		return 0
	}
	if gc := c.gate.conn(identity); gc != nil {
		return gc.out.queued()
	}
	return 0
}

// closeFlush bounds how long Close waits for what was queued to reach the peers: a member's
// last ack (of its goodbye) must not be lost to the controller's closing right after it.
const closeFlush = time.Second

// Close closes the socket and waits (briefly) for the reader to stop. Closing again does nothing.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Conn) close() error {
	if c.gate != nil {
		c.gate.flush(time.Now().Add(closeFlush))
	}
	err := c.sock.Close()
	// A peer that left first had its connection closed by zmq4, which removes it only later:
	// closing it again reports net.ErrClosed, which is no failure of ours.
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	c.cancel()
	if c.removeIPCDir {
		os.RemoveAll(c.ipcDir)
	}
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
		return errors.New("close: reader did not stop")
	}
	return err
}
