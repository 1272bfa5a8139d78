package wire

import (
	"bytes"
	"testing"
)

// FuzzStream feeds arbitrary bytes to the gate's ZMTP check, whole and in pieces: it never
// panics, never hands on more than it was given, holds back no more than an incomplete READY,
// and decides the same whatever the pieces (a peer chooses how its bytes arrive).
func FuzzStream(f *testing.F) {
	f.Add(validHandshake("a"), uint8(1))
	f.Add(append(greeting(), []byte("\x04\x08\x05READY\x01A")...), uint8(3))
	f.Add(append(validHandshake("b"), 0x02, 0x40, 0, 0, 0, 0, 0, 0, 0), uint8(7))
	f.Add(append(validHandshake("c"), flagMore, 1, 'x', 0x00, 2, 'y', 'z'), uint8(2))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		whole, wholeHeld, wholeErr := scanPieces(data, len(data)+1)
		parts, partsHeld, partsErr := scanPieces(data, int(piece%64)+1)
		if (wholeErr == nil) != (partsErr == nil) {
			t.Fatalf("whole: %v; in pieces of %d: %v", wholeErr, piece%64+1, partsErr)
		}
		if wholeErr == nil && (whole != parts || !bytes.Equal(wholeHeld, partsHeld)) {
			t.Fatalf("whole handed %d held %d; pieces handed %d held %d", whole, len(wholeHeld), parts, len(partsHeld))
		}
		if whole > len(data) || len(wholeHeld) > greetingSize+9+maxReady {
			t.Fatalf("handed %d of %d, held %d", whole, len(data), len(wholeHeld))
		}
	})
}

// scanPieces scans data arriving in pieces of n bytes as gatedConn does: what is handed on
// goes, an incomplete header waits for more. It returns the bytes handed on, what is still held,
// and the first error.
func scanPieces(data []byte, n int) (int, []byte, error) {
	s := &stream{wantType: "DEALER", needID: true, limit: func() uint64 { return maxUntrusted }}
	var held []byte
	handed := 0
	for off := 0; off < len(data); off += n {
		held = append(held, data[off:min(off+n, len(data))]...)
		k, err := s.scan(held)
		if k < 0 || k > len(held) {
			panic("scan handed on what it was not given")
		}
		handed += k
		held = held[k:]
		if err != nil {
			return handed, held, err
		}
	}
	return handed, held, nil
}
