package control

import (
	"testing"
	"time"

	"github.com/lockprobe/lockprobe/proto"
)

// TestQuietWindows: the run's instants are every queue's `@` commands, distinct and in order;
// the controller's periodic work waits inside [instant − 5 ms, instant + trail] and nowhere else.
func TestQuietWindows(t *testing.T) {
	start := time.Unix(1000, 0)
	abs := start.Add(3 * time.Second)
	queues := [][]proto.Command{
		{{Op: proto.OpLock, HasAt: true, After: time.Second}, {Op: proto.OpRelease}, {Op: proto.OpLock, HasAt: true, After: 2 * time.Second}},
		{{Op: proto.OpLock, HasAt: true, After: time.Second}, {Op: proto.OpSleep, HasAt: true, Abs: abs}},
	}
	got := instantsOf(queues, start)
	want := []time.Time{start.Add(time.Second), start.Add(2 * time.Second), abs}
	if len(got) != len(want) {
		t.Fatalf("instants %v, want %v", got, want)
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Fatalf("instants %v, want %v", got, want)
		}
	}
	r := &run{}
	r.quiet.Store(&quietWindows{instants: got, trail: 10 * time.Millisecond})
	at := start.Add(time.Second)
	for _, c := range []struct {
		now  time.Time
		want time.Time
	}{
		{at.Add(-6 * time.Millisecond), time.Time{}},
		{at.Add(-5 * time.Millisecond), at.Add(10 * time.Millisecond)},
		{at, at.Add(10 * time.Millisecond)},
		{at.Add(9 * time.Millisecond), at.Add(10 * time.Millisecond)},
		{at.Add(11 * time.Millisecond), time.Time{}},
		{abs.Add(time.Millisecond), abs.Add(10 * time.Millisecond)},
		{abs.Add(time.Second), time.Time{}},
	} {
		if end := r.quietEnd(c.now); !end.Equal(c.want) {
			t.Errorf("quietEnd(instant %+v) = %v, want %v", c.now.Sub(at), end, c.want)
		}
	}
}
