package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/transport"
)

// zmq4 finds transports by the scheme of an endpoint. lockprobe registers its own: a ROUTER
// listens on a gate built beforehand (lockprobe-gate://KEY names it), and a DEALER dials TCP or
// a Unix socket through the same checks on what the controller sends back.
const (
	schemeGate = "lockprobe-gate"
	schemeTCP  = "lockprobe-tcp"
	schemeIPC  = "lockprobe-ipc"
)

var (
	registerOnce sync.Once
	registerErr  error
	gates        sync.Map // key → *gate, waiting for zmq4's Listen to take it
	gateSeq      atomic.Uint64
)

func registerTransports() error {
	registerOnce.Do(func() {
		registerErr = errors.Join(
			zmq4.RegisterTransport(schemeGate, gateTransport{}),
			zmq4.RegisterTransport(schemeTCP, dialTransport{network: "tcp"}),
			zmq4.RegisterTransport(schemeIPC, dialTransport{network: "unix"}),
		)
	})
	return registerErr
}

// offer parks g for the zmq4 Listen that follows and returns its endpoint.
func offer(g *gate) string {
	key := fmt.Sprintf("g%d", gateSeq.Add(1))
	gates.Store(key, g)
	return schemeGate + "://" + key
}

type gateTransport struct{}

func (gateTransport) Listen(_ context.Context, addr string) (net.Listener, error) {
	g, ok := gates.LoadAndDelete(addr)
	if !ok {
		return nil, fmt.Errorf("no gate %q", addr)
	}
	return g.(*gate), nil
}

func (gateTransport) Dial(context.Context, transport.Dialer, string) (net.Conn, error) {
	return nil, errors.New("a gate only listens")
}

func (gateTransport) Addr(ep string) (string, error) { return ep, nil }

// dialHandshake bounds a DEALER's handshake with the controller.
const dialHandshake = 10 * time.Second

type dialTransport struct{ network string }

func (t dialTransport) Dial(ctx context.Context, d transport.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, t.network, addr)
	if err != nil {
		return nil, err
	}
	gc := newGatedConn(c, &stream{wantType: "ROUTER"}, 10*time.Second, false)
	gc.handshakeOpen = true
	_ = c.SetReadDeadline(time.Now().Add(dialHandshake))
	return gc, nil
}

func (dialTransport) Listen(context.Context, string) (net.Listener, error) {
	return nil, errors.New("listen through wire.Listen")
}

func (t dialTransport) Addr(ep string) (string, error) {
	if t.network == "tcp" {
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return "", err
		}
	}
	return ep, nil
}

// dialEndpoint maps a user's endpoint (tcp://HOST:PORT, ipc:///PATH) to lockprobe's transports.
func dialEndpoint(endpoint string) (string, error) {
	switch {
	case strings.HasPrefix(endpoint, "tcp://"):
		return schemeTCP + endpoint[len("tcp"):], nil
	case strings.HasPrefix(endpoint, "ipc://"):
		return schemeIPC + endpoint[len("ipc"):], nil
	}
	return "", fmt.Errorf("endpoint %q: want tcp://HOST:PORT or ipc:///PATH", endpoint)
}
