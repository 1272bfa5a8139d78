package probe

import (
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/proto"
)

// TestResyncBurstKeepsTheShortestRoundTrip: of a burst's answers the one with the shortest
// round trip gives the measurement, once the last is in; a burst whose answers did not all come
// still yields its best when the next one starts.
func TestResyncBurstKeepsTheShortestRoundTrip(t *testing.T) {
	base := time.Unix(1000, 0)
	var b resyncBurst
	if _, ok := b.start(); ok {
		t.Fatal("an empty burst gave a measurement")
	}
	// Three pings; the controller's clock is 5 ms ahead. Round trips 8, 2 and 30 ms.
	rtts := []time.Duration{8 * time.Millisecond, 2 * time.Millisecond, 30 * time.Millisecond}
	for i := range rtts {
		b.sent(base.Add(time.Duration(i) * time.Second).UnixNano())
	}
	var best clock
	var done bool
	for i, rtt := range rtts {
		t1 := base.Add(time.Duration(i) * time.Second)
		tc := t1.Add(rtt / 2).Add(5 * time.Millisecond)
		best, done = b.pong(&proto.Pong{T1: t1.UnixNano(), TC: tc.UnixNano()}, t1.Add(rtt))
		if done != (i == len(rtts)-1) {
			t.Fatalf("after pong %d: done %v", i, done)
		}
	}
	if best.uncertainty != time.Millisecond || best.offset != 5*time.Millisecond {
		t.Errorf("best %+v, want offset 5ms ± 1ms (the 2 ms round trip)", best)
	}
	if _, ok := b.pong(&proto.Pong{T1: base.UnixNano()}, base); ok {
		t.Error("a pong answered twice counted again")
	}
	// A burst with one answer missing.
	b.start()
	b.sent(1)
	b.sent(2)
	b.pong(&proto.Pong{T1: 1, TC: 1}, time.Unix(0, 1).Add(4*time.Millisecond))
	if c, ok := b.start(); !ok || c.uncertainty != 2*time.Millisecond {
		t.Errorf("incomplete burst gave %+v, %v; want its one answer", c, ok)
	}
}
