package proto

import (
	"bytes"
	"testing"
)

// FuzzDecode checks that Decode never panics, and that whatever it accepts survives a second
// trip: re-encoded and decoded again, it is the same message and the same bytes.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(mustEncode(f, m))
	}
	f.Add(frameOf(Version, KindCommands, `{"start":"2025-03-01T12:00:00+01:00","queue":[{"op":2,"mode":"read"}],"peers":null}`))
	f.Add(frameOf(Version, KindPing, `null`))
	f.Add(frameOf(Version, KindHello, `{"role":"locker","pid":1,"host":"\xff"}`))
	f.Add([]byte("LP"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode returned a message with its error %v", err)
			}
			return
		}
		b1, err := Encode(m)
		if err != nil {
			t.Fatalf("a decoded %s does not encode: %v", m.Kind, err)
		}
		m2, err := Decode(b1)
		if err != nil {
			t.Fatalf("a re-encoded %s does not decode: %v\nframe % x", m.Kind, err, b1)
		}
		if !equalMessages(m, m2) {
			t.Fatalf("second trip changed the %s:\n got %+v\nwant %+v", m.Kind, m2, m)
		}
		b2, err := Encode(m2)
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("encoding is not stable:\n% x\n% x", b1, b2)
		}
	})
}
