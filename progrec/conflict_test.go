package progrec

import (
	"os"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/lockprobe/lockprobe/semconv"
)

// TestOwnerAttrs: a traced program's conflict owner goes through the one owner rule: the asker
// itself, another recorded process, no pid, or a pid no recorded process has (local or not).
func TestOwnerAttrs(t *testing.T) {
	self := &Proc{ID: 0, PID: 4711}
	other := &Proc{ID: 1, PID: 4712}
	byPID := func(pid int) *Proc {
		for _, p := range []*Proc{self, other} {
			if p.PID == pid {
				return p
			}
		}
		return nil
	}
	const gone = 1 << 22 // above pid_max's default: no process has it
	tests := []struct {
		name   string
		o      Owner
		class  semconv.OwnerClass
		locker int64
		local  int64
	}{
		{"nothing conflicts", Owner{PID: 4712}, semconv.OwnerNone, -1, 1},
		{"the asker itself", Owner{PID: 4711, Mode: semconv.ModeWrite}, semconv.OwnerSelf, 0, 1},
		{"another traced process", Owner{PID: 4712, Mode: semconv.ModeRead}, semconv.OwnerLocker, 1, 1},
		{"no pid (OFD)", Owner{PID: -1, Mode: semconv.ModeWrite}, semconv.OwnerUnknown, -1, 1},
		{"a process of this node", Owner{PID: os.Getpid(), Mode: semconv.ModeWrite}, semconv.OwnerForeign, -1, 1},
		{"no process of this node", Owner{PID: gone, Mode: semconv.ModeWrite}, semconv.OwnerForeign, -1, 0},
	}
	for _, tt := range tests {
		attrs := map[string]*commonpb.AnyValue{}
		for _, kv := range OwnerAttrs(tt.o, self, byPID, "n1") {
			attrs[kv.Key] = kv.Value
		}
		if c := attrs[semconv.LockOwnerClass].GetStringValue(); c != tt.class.String() {
			t.Errorf("%s: class %q, want %s", tt.name, c, tt.class)
		}
		if id := attrs[semconv.LockOwnerLockerID].GetIntValue(); id != tt.locker {
			t.Errorf("%s: locker %d, want %d", tt.name, id, tt.locker)
		}
		if l := attrs[semconv.LockOwnerLocal].GetIntValue(); l != tt.local {
			t.Errorf("%s: local %d, want %d", tt.name, l, tt.local)
		}
	}
}
