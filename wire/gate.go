package wire

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The gate stands between the network and zmq4's ROUTER. zmq4 runs each connection's handshake
// inside its one accept loop with no deadline, so one idle connection kept every locker out,
// and it believes every length a peer declares. The gate accepts connections itself, runs each
// handshake on a goroutine of its own under a deadline, checks every byte (stream), and hands
// zmq4 only connections whose greeting and READY are complete and sound; zmq4's own handshake
// then replays from the gate's buffer and cannot block. After the handshake the gate still
// checks each frame header before zmq4 allocates, with a small limit until the controller says
// the peer is one of its members (Trust), and closes a peer that has not earned that in time.

// GateOptions bound what a stranger may cost. Zero values get the defaults.
type GateOptions struct {
	// Handshake bounds the ZMTP greeting and READY of a new connection. Optional: 5s.
	Handshake time.Duration
	// Trust bounds the time from the handshake to the controller's Trust: a connection that has
	// not presented an accepted hello by then is closed. Optional: 30s.
	Trust time.Duration
	// MaxPending bounds the connections in their handshake; past it the oldest is dropped, so
	// a flood of idle connections delays a real locker by no more than its own handshake.
	// Optional: 1024.
	MaxPending int
	// WriteTimeout bounds each write to a peer; a write cut short by it closes the connection
	// (the rest of the frame cannot follow later). A peer's writes are its outbox's, on a
	// goroutine of their own (outbox.go): no other peer waits for them. Optional: 10s.
	WriteTimeout time.Duration
	// MaxQueued bounds the bytes waiting in one peer's outbox; past it SendTo returns
	// ErrNotReading. A lone message of any size is always taken. Optional: 1 MiB (a queue with a
	// 1000-locker peer table is 56 KB; what a member is sent in a second is well under 1 KB).
	MaxQueued int
}

func (o *GateOptions) defaults() {
	if o.Handshake <= 0 {
		o.Handshake = 5 * time.Second
	}
	if o.Trust <= 0 {
		o.Trust = 30 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 1024
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = 1 << 20
	}
}

// gate is a net.Listener over one or more real listeners that yields only checked connections.
type gate struct {
	opts   GateOptions
	inner  []net.Listener
	ready  chan net.Conn
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	pending []*gatedConn          // in their handshake, oldest first
	byID    map[string]*gatedConn // handed to zmq4, by identity
}

func newGate(opts GateOptions, inner ...net.Listener) *gate {
	opts.defaults()
	g := &gate{opts: opts, inner: inner, ready: make(chan net.Conn), closed: make(chan struct{}), byID: map[string]*gatedConn{}}
	for _, l := range inner {
		go g.serve(l)
	}
	return g
}

func (g *gate) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-g.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Out of descriptors and the like: wait a little rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		gc := newGatedConn(c, &stream{wantType: "DEALER", needID: true}, g.opts.WriteTimeout, true)
		g.mu.Lock()
		if len(g.pending) >= g.opts.MaxPending {
			oldest := g.pending[0]
			g.pending = g.pending[1:]
			oldest.Conn.Close()
		}
		g.pending = append(g.pending, gc)
		g.mu.Unlock()
		go g.admit(gc)
	}
}

// admit runs one handshake and hands the connection on, or drops it.
func (g *gate) admit(c *gatedConn) {
	ok := g.handshake(c)
	g.mu.Lock()
	for i, p := range g.pending {
		if p == c {
			g.pending = append(g.pending[:i], g.pending[i+1:]...)
			break
		}
	}
	if ok {
		// One connection per identity: zmq4 would route a member's messages to both.
		if _, dup := g.byID[c.s.identity]; dup {
			ok = false
		} else {
			c.out = newOutbox(c, g.opts.MaxQueued)
			g.byID[c.s.identity] = c
			c.onClose = g.forget
		}
	}
	g.mu.Unlock()
	if !ok {
		c.Conn.Close()
		return
	}
	c.trustTimer.Store(time.AfterFunc(g.opts.Trust, func() {
		if !c.trusted.Load() {
			c.Close()
		}
	}))
	select {
	case g.ready <- c:
	case <-g.closed:
		c.Close()
	}
}

func (g *gate) handshake(c *gatedConn) bool {
	_ = c.Conn.SetDeadline(time.Now().Add(g.opts.Handshake))
	// The gate greets on zmq4's behalf (a peer waits for our greeting before its READY) and
	// swallows the identical greeting zmq4 writes later.
	if _, err := c.Conn.Write(zmq4Greeting); err != nil {
		return false
	}
	c.swallow = greetingSize
	for c.s.phase != phaseFrames {
		if err := c.fill(); err != nil {
			return false
		}
	}
	_ = c.Conn.SetDeadline(time.Time{})
	return true
}

func (g *gate) forget(c *gatedConn) {
	g.mu.Lock()
	if g.byID[c.s.identity] == c {
		delete(g.byID, c.s.identity)
	}
	g.mu.Unlock()
}

// conn returns the connection of a member's identity.
func (g *gate) conn(identity string) *gatedConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.byID[identity]
}

// trusted returns the admitted connections whose peer the controller has trusted.
func (g *gate) trusted() []*gatedConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*gatedConn, 0, len(g.byID))
	for _, c := range g.byID {
		if c.trusted.Load() {
			out = append(out, c)
		}
	}
	return out
}

// flush waits until every admitted connection's outbox is empty, or deadline.
func (g *gate) flush(deadline time.Time) {
	g.mu.Lock()
	var waits []<-chan struct{}
	for _, c := range g.byID {
		waits = append(waits, c.out.flushed())
	}
	g.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-timer.C:
			return
		}
	}
}

func (g *gate) Accept() (net.Conn, error) {
	select {
	case c := <-g.ready:
		return c, nil
	case <-g.closed:
		return nil, net.ErrClosed
	}
}

func (g *gate) Close() error {
	g.once.Do(func() {
		close(g.closed)
		for _, l := range g.inner {
			l.Close()
		}
		g.mu.Lock()
		for _, p := range g.pending {
			p.Conn.Close()
		}
		g.mu.Unlock()
	})
	return nil
}

func (g *gate) Addr() net.Addr { return g.inner[0].Addr() }

// gatedConn is a connection whose every incoming byte went through stream first.
type gatedConn struct {
	net.Conn
	s            *stream
	writeTimeout time.Duration

	// buf[off:safe] is checked and not yet read; buf[safe:end] is a header still incomplete.
	buf            []byte
	off, safe, end int
	err            error
	swallow        int // bytes of zmq4's own greeting still to drop from its writes
	trusted        atomic.Bool
	trustTimer     atomic.Pointer[time.Timer] // its own func may close the connection: no lock orders them
	handshakeOpen  bool                       // a dialled connection: the deadline stands until the handshake is checked
	onClose        func(*gatedConn)
	closeOnce      sync.Once
	// writeMu orders zmq4's writes (its handshake) and the outbox's.
	writeMu sync.Mutex
	out     *outbox // the ROUTER's writes to this peer; nil on a DEALER's connection
}

func newGatedConn(c net.Conn, s *stream, writeTimeout time.Duration, server bool) *gatedConn {
	gc := &gatedConn{Conn: c, s: s, writeTimeout: writeTimeout, buf: make([]byte, 64<<10)}
	s.limit = func() uint64 {
		if !server || gc.trusted.Load() {
			return maxFrame
		}
		return maxUntrusted
	}
	return gc
}

// fill reads once from the network and checks what arrived.
func (c *gatedConn) fill() error {
	if c.err != nil {
		return c.err
	}
	if c.off == c.safe && c.safe > 0 {
		// Move the incomplete header to the front.
		c.end = copy(c.buf, c.buf[c.safe:c.end])
		c.off, c.safe = 0, 0
	}
	if c.end == len(c.buf) {
		c.err = streamErr("header larger than %d bytes", len(c.buf))
		c.Conn.Close()
		return c.err
	}
	n, err := c.Conn.Read(c.buf[c.end:])
	c.end += n
	if n > 0 {
		k, serr := c.s.scan(c.buf[c.safe:c.end])
		c.safe += k
		if serr != nil {
			c.err = serr
			c.Conn.Close()
			return c.err
		}
		if c.handshakeOpen && c.s.phase == phaseFrames {
			c.handshakeOpen = false
			_ = c.Conn.SetReadDeadline(time.Time{})
		}
	}
	if err != nil {
		c.err = err
		if c.off < c.safe {
			return nil // hand on what was checked first
		}
		return err
	}
	return nil
}

func (c *gatedConn) Read(p []byte) (int, error) {
	for c.off == c.safe {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.off:c.safe])
	c.off += n
	return n, nil
}

func (c *gatedConn) Write(p []byte) (int, error) {
	skipped := 0
	if c.swallow > 0 {
		skipped = min(c.swallow, len(p))
		c.swallow -= skipped
		p = p[skipped:]
		if len(p) == 0 {
			return skipped, nil
		}
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	n, err := c.Conn.Write(p)
	return skipped + n, err
}

// writeBuffers writes bufs to the network (one writev) within the write timeout.
func (c *gatedConn) writeBuffers(bufs *net.Buffers) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	_, err := bufs.WriteTo(c.Conn)
	return err
}

// closeWrite ends the writing half only, so that the reader still gets what the peer sent; a
// connection without halves is closed.
func (c *gatedConn) closeWrite() {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.Close()
}

func (c *gatedConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if t := c.trustTimer.Load(); t != nil {
			t.Stop()
		}
		err = c.Conn.Close()
		if c.out != nil {
			close(c.out.done)
		}
		if c.onClose != nil {
			c.onClose(c)
		}
	})
	return err
}
