// Package wire carries proto frames over ZeroMQ (github.com/go-zeromq/zmq4): the controller's
// ROUTER and each locker's DEALER. zmq4's Recv has no deadline, so each Conn runs one reader
// goroutine that hands frames to a channel; callers select on it with their own deadlines.
// zmq4's ROUTER silently drops a message for an identity that has not connected, so the
// protocol above never sends to a locker before its hello has arrived.
package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
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

// Conn is a socket with a reader goroutine.
type Conn struct {
	sock   zmq4.Socket
	router bool
	in     chan Incoming
	sendMu sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// quietLogger keeps zmq4's reconnect chatter out of the user's terminal.
var quietLogger = log.New(io.Discard, "", 0)

// Listen binds a ROUTER at endpoint (tcp://127.0.0.1:0 picks a free port).
func Listen(ctx context.Context, endpoint string) (*Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	sock := zmq4.NewRouter(ctx, zmq4.WithLogger(quietLogger), zmq4.WithTimeout(5*time.Second))
	if err := sock.Listen(endpoint); err != nil {
		cancel()
		return nil, fmt.Errorf("listen %s: %w", endpoint, err)
	}
	return start(ctx, sock, true, cancel), nil
}

// Dial connects a DEALER with an explicit identity to endpoint.
func Dial(ctx context.Context, endpoint, identity string) (*Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	sock := zmq4.NewDealer(ctx, zmq4.WithID(zmq4.SocketIdentity(identity)), zmq4.WithLogger(quietLogger),
		zmq4.WithDialerRetry(100*time.Millisecond), zmq4.WithDialerMaxRetries(50), zmq4.WithTimeout(5*time.Second))
	if err := sock.Dial(endpoint); err != nil {
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

// Addr is the bound address of a ROUTER, as an endpoint string.
func (c *Conn) Addr() string {
	a := c.sock.Addr()
	if a == nil {
		return ""
	}
	if tcp, ok := a.(*net.TCPAddr); ok {
		return fmt.Sprintf("tcp://%s", tcp.String())
	}
	return a.Network() + "://" + a.String()
}

// Backlog is how many received messages wait in In: a controller that is behind should not
// judge the live state, which is older for some lockers than for others.
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
	return c.SendTo("", m)
}

// SendTo sends one message to the DEALER with identity to (ROUTER side).
func (c *Conn) SendTo(to string, m *proto.Message) error {
	frame, err := proto.Encode(m)
	if err != nil {
		return err
	}
	var msg zmq4.Msg
	if c.router {
		msg = zmq4.NewMsgFrom([]byte(to), frame)
	} else {
		msg = zmq4.NewMsg(frame)
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.router {
		err = c.sock.SendMulti(msg)
	} else {
		err = c.sock.Send(msg)
	}
	if err != nil {
		return fmt.Errorf("send %s: %w", m.Kind, err)
	}
	return nil
}

// Close closes the socket and waits (briefly) for the reader to stop.
func (c *Conn) Close() error {
	err := c.sock.Close()
	// A peer that left first had its connection closed by zmq4, which removes it only later:
	// closing it again reports net.ErrClosed, which is no failure of ours.
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
		return errors.New("close: reader did not stop")
	}
	return err
}
