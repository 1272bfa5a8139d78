package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/lockprobe/lockprobe/proto"
)

// ZMTP 3 as zmq4 speaks it with NULL security (rfc.zeromq.org/spec/23): each side sends a
// 64-byte greeting, then one READY command whose body is the socket's metadata, then frames.
// zmq4 v0.17.0 trusts all of it: a READY whose metadata is cut short panics in its property
// parser, and a frame header declaring 2^62 bytes goes straight to make([]byte, size). stream
// checks every byte before zmq4 sees it.

const (
	greetingSize = 64
	// maxReady bounds the READY command: a socket type and an identity of at most 255 bytes.
	maxReady = 4 << 10
	// maxFrame bounds one frame once the peer is trusted: the largest message the protocol allows.
	maxFrame = proto.HeaderSize + proto.MaxPayload
	// maxUntrusted bounds a frame before the peer is trusted (its hello has not been accepted):
	// enough for a hello, far too little for a stranger to make us allocate much.
	maxUntrusted = 64 << 10
	// maxCommand bounds a ZMTP command after the handshake (PING, PONG, ERROR: small).
	maxCommand = 1 << 10
	// maxParts bounds the frames of one message: the protocol sends one, a ROUTER two.
	maxParts = 4
)

const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
)

// zmq4Greeting is the greeting zmq4 sends (it never sets as-server): the gate sends it on zmq4's
// behalf and swallows zmq4's own copy.
var zmq4Greeting = func() []byte {
	g := make([]byte, greetingSize)
	g[0], g[9], g[10], g[11] = 0xFF, 0x7F, 3, 0
	copy(g[12:32], "NULL")
	return g
}()

// errStream marks a peer that broke the ZMTP rules; the connection is dropped.
var errStream = errors.New("zmtp")

func streamErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errStream, fmt.Sprintf(format, args...))
}

type phase uint8

const (
	phaseGreeting phase = iota
	phaseReady
	phaseFrames
)

// stream validates the bytes one peer sends, in order, in pieces of any size.
type stream struct {
	phase phase
	// wantType is the socket type the peer must declare (DEALER towards our ROUTER, ROUTER
	// towards our DEALER); needID says it must declare an identity (our ROUTER routes by it).
	wantType string
	needID   bool
	// limit gives the largest frame accepted now (it rises when the peer is trusted).
	limit func() uint64

	identity  string
	remaining uint64 // body bytes of the current frame still to come
	inMessage bool   // the last frame had the more flag
	parts     int    // frames of the current message so far
	total     uint64 // bytes of the current message so far
}

// scan checks b, the bytes that follow those already scanned, and says how many of them may be
// handed on: all but a trailing header (or greeting, or READY command) that is not complete
// yet, which the caller keeps and passes again, with what follows, next time.
func (s *stream) scan(b []byte) (int, error) {
	i := 0
	for i < len(b) {
		switch s.phase {
		case phaseGreeting:
			if len(b)-i < greetingSize {
				return i, nil
			}
			if err := checkGreeting(b[i : i+greetingSize]); err != nil {
				return i, err
			}
			i += greetingSize
			s.phase = phaseReady
		case phaseReady:
			fl, size, hdr, ok, err := header(b[i:])
			if err != nil || !ok {
				return i, err
			}
			if fl&flagCommand == 0 || fl&flagMore != 0 {
				return i, streamErr("first frame after the greeting is not a command")
			}
			if size > maxReady {
				return i, streamErr("READY command of %d bytes (at most %d)", size, maxReady)
			}
			if uint64(len(b)-i-hdr) < size {
				return i, nil
			}
			id, err := checkReady(b[i+hdr:i+hdr+int(size)], s.wantType, s.needID)
			if err != nil {
				return i, err
			}
			s.identity = id
			i += hdr + int(size)
			s.phase = phaseFrames
		case phaseFrames:
			if s.remaining > 0 {
				n := min(uint64(len(b)-i), s.remaining)
				s.remaining -= n
				i += int(n)
				continue
			}
			fl, size, hdr, ok, err := header(b[i:])
			if err != nil || !ok {
				return i, err
			}
			if err := s.frame(fl, size); err != nil {
				return i, err
			}
			i += hdr
			s.remaining = size
		}
	}
	return i, nil
}

// frame checks one frame header after the handshake.
func (s *stream) frame(fl byte, size uint64) error {
	if fl&flagCommand != 0 {
		if s.inMessage || fl&flagMore != 0 {
			return streamErr("command frame inside a message")
		}
		if size > maxCommand {
			return streamErr("command of %d bytes (at most %d)", size, maxCommand)
		}
		return nil
	}
	if !s.inMessage {
		s.parts, s.total = 0, 0
	}
	s.parts++
	s.total += size
	if s.parts > maxParts {
		return streamErr("message of more than %d frames", maxParts)
	}
	if limit := s.limit(); size > limit || s.total > limit {
		return streamErr("message of %d bytes (at most %d now)", s.total, limit)
	}
	s.inMessage = fl&flagMore != 0
	return nil
}

// header reads a frame header at the start of b: its flags, body size and own length; ok is
// false when b holds only part of it.
func header(b []byte) (fl byte, size uint64, n int, ok bool, err error) {
	if len(b) < 1 {
		return 0, 0, 0, false, nil
	}
	fl = b[0]
	if fl&^(flagMore|flagLong|flagCommand) != 0 {
		return fl, 0, 0, false, streamErr("frame flags %#02x have reserved bits set", fl)
	}
	if fl&flagLong == 0 {
		if len(b) < 2 {
			return fl, 0, 0, false, nil
		}
		return fl, uint64(b[1]), 2, true, nil
	}
	if len(b) < 9 {
		return fl, 0, 0, false, nil
	}
	return fl, binary.BigEndian.Uint64(b[1:9]), 9, true, nil
}

// checkGreeting accepts a ZMTP 3.x greeting with the NULL mechanism, as zmq4 does, and
// nothing zmq4 would trip over.
func checkGreeting(g []byte) error {
	if g[0] != 0xFF || g[9] != 0x7F {
		return streamErr("not a ZMTP greeting")
	}
	if g[10] < 3 {
		return streamErr("ZMTP version %d.%d (want 3.0 or later)", g[10], g[11])
	}
	mech := g[12:32]
	if n := indexByte(mech, 0); n >= 0 {
		mech = mech[:n]
	}
	if string(mech) != "NULL" {
		return streamErr("security mechanism %q (want NULL)", mech)
	}
	if g[32] > 1 {
		return streamErr("as-server flag %d", g[32])
	}
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// checkReady parses the body of a READY command: its name, then properties (name length, name,
// 4-byte value length, value) to the end, every length within bounds. It returns the identity.
func checkReady(body []byte, wantType string, needID bool) (string, error) {
	if len(body) < 1 || int(body[0]) > len(body)-1 {
		return "", streamErr("command name cut short")
	}
	name := string(body[1 : 1+body[0]])
	if name != "READY" {
		return "", streamErr("command %q where READY was due", name)
	}
	props := body[1+len(name):]
	meta := map[string]string{}
	for len(props) > 0 {
		kl := int(props[0])
		if kl == 0 {
			return "", streamErr("metadata property with an empty name")
		}
		if len(props) < 1+kl+4 {
			return "", streamErr("metadata property cut short")
		}
		key := strings.ToLower(string(props[1 : 1+kl]))
		vl := binary.BigEndian.Uint32(props[1+kl:])
		rest := props[1+kl+4:]
		if uint64(vl) > uint64(len(rest)) {
			return "", streamErr("metadata value of %q cut short", key)
		}
		if _, dup := meta[key]; dup {
			return "", streamErr("metadata property %q twice", key)
		}
		meta[key] = string(rest[:vl])
		props = rest[vl:]
	}
	if t := meta["socket-type"]; t != wantType {
		return "", streamErr("socket type %q (want %s)", t, wantType)
	}
	id := meta["identity"]
	if needID && (id == "" || len(id) > 255) {
		return "", streamErr("identity of %d bytes (want 1 to 255)", len(id))
	}
	return id, nil
}
