package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/lockprobe/lockprobe/proto"
)

// The ROUTER's writes are wire's own. zmq4 v0.17.0's ROUTER writes a message synchronously to
// its one peer while it holds a lock for the whole socket, and ignores the send's context: one
// member that did not read (its socket buffer full) stopped every send to every other member,
// and with them the controller's loop — at 1000 lockers on two cores the beats stopped for over
// 5 s and every locker left without its goodbye. Each connection the gate admits has an outbox
// instead: SendTo queues the frame and returns at once, and the connection's own goroutine
// writes it. A slow reader delays only what is sent to it; a peer that stops reading fills
// only its own outbox, and past its bound SendTo says so (ErrNotReading) instead of waiting.
//
// zmq4 still reads every connection and runs the handshake; after the handshake it writes
// nothing on a ROUTER's connection (its reader answers no PING; the protocol sends none), and
// what it might write goes through the same lock as the outbox's writes, so frames never
// interleave.

// ErrNotReading says a peer's outbox holds its bound (GateOptions.MaxQueued): the peer has not
// taken what was sent to it for a while. The message was not queued.
var ErrNotReading = errors.New("peer not reading: its outbox is full")

// ErrNoPeer says no connection has the identity (it never connected, or it has gone: also when
// writing to it failed because it closed its end). zmq4's ROUTER dropped such a message silently.
var ErrNoPeer = errors.New("no connection with that identity")

// outFrame is one proto frame waiting to be written.
type outFrame struct {
	kind  proto.Kind
	frame []byte
}

// outbox is the queue of frames for one peer and the goroutine that writes them.
type outbox struct {
	c     *gatedConn // its writeTimeout bounds one write; a write cut short closes the connection
	limit int        // bytes that may wait (a lone frame of any size is always taken)

	mu      sync.Mutex
	waiting []outFrame
	bytes   int           // of the frames waiting and the batch being written
	err     error         // why the outbox takes nothing more (a failed write, a closed connection)
	drained chan struct{} // closed while nothing waits or is being written
	wake    chan struct{}
	done    chan struct{} // closed when the connection closes
}

func newOutbox(c *gatedConn, limit int) *outbox {
	o := &outbox{c: c, limit: limit, drained: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{})}
	close(o.drained)
	go o.write()
	return o
}

// put queues frame; it never blocks. A frame of a kind that coalesces (a beat) is not queued
// again while one of its kind still waits: the one waiting says as much.
func (o *outbox) put(kind proto.Kind, frame []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if kind.Coalesces() {
		for _, f := range o.waiting {
			if f.kind == kind {
				return nil
			}
		}
	}
	if o.bytes > 0 && o.bytes+len(frame) > o.limit {
		return ErrNotReading
	}
	if o.bytes == 0 {
		o.drained = make(chan struct{})
	}
	o.waiting = append(o.waiting, outFrame{kind: kind, frame: frame})
	o.bytes += len(frame)
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// queued is how many bytes wait to be written (or are being written) to the peer.
func (o *outbox) queued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// flushed returns a channel closed once nothing waits to be written.
func (o *outbox) flushed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.drained
}

// write takes what waits, all of it, and writes it in one system call (ZMTP frames: a flags
// byte, a size, the body), until the connection closes or a write fails.
func (o *outbox) write() {
	var bufs net.Buffers
	for {
		select {
		case <-o.wake:
		case <-o.done:
			o.stop(net.ErrClosed)
			return
		}
		o.mu.Lock()
		batch, n := o.waiting, 0
		o.waiting = nil
		o.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		bufs = bufs[:0]
		hdrs := make([]byte, 0, 9*len(batch))
		for _, f := range batch {
			start := len(hdrs)
			hdrs = frameHeader(hdrs, len(f.frame))
			bufs = append(bufs, hdrs[start:len(hdrs):len(hdrs)], f.frame)
			n += len(f.frame)
		}
		if err := o.c.writeBuffers(&bufs); err != nil {
			// A frame cut short cannot be finished later: the stream is broken.
			if errors.Is(err, os.ErrDeadlineExceeded) {
				o.stop(fmt.Errorf("write to %q: %w", o.c.s.identity, err))
				o.c.Close() // a peer that does not read
				return
			}
			o.stop(fmt.Errorf("write to %q: %w (%v)", o.c.s.identity, ErrNoPeer, err))
			// The peer is gone (EPIPE, ECONNRESET) but what it sent before it went may still
			// wait unread: its goodbye and last records. Closing the whole connection threw
			// them away (at 1000 lockers, hundreds of goodbyes); the reader takes them and
			// closes at the end of the stream.
			o.c.closeWrite()
			return
		}
		o.mu.Lock()
		o.bytes -= n
		if o.bytes == 0 {
			close(o.drained)
		}
		o.mu.Unlock()
	}
}

// stop makes the outbox take nothing more and lets a flush waiting on it go.
func (o *outbox) stop(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = err
	}
	o.waiting = nil
	if o.bytes > 0 {
		o.bytes = 0
		close(o.drained)
	}
}

// frameHeader appends the header of a single-frame ZMTP message of size bytes: the ROUTER's
// message to a DEALER is the frames after the identity, here the one proto frame.
func frameHeader(b []byte, size int) []byte {
	if size <= 255 {
		return append(b, 0, byte(size))
	}
	return binary.BigEndian.AppendUint64(append(b, flagLong), uint64(size))
}
