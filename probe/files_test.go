package probe

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// testExecutor is an executor whose spans go to a list, allowed the files in allow.
func testExecutor(t *testing.T, allow ...string) (*executor, *spanList) {
	t.Helper()
	rec := &spanList{}
	l := &Locker{opts: Options{Allow: allow}, rec: newRecorder(rec.put), log: quietLog}
	return &executor{l: l, stop: make(chan struct{})}, rec
}

// spanList keeps the spans a recorder queues.
type spanList struct {
	mu    sync.Mutex
	items []item
}

func (l *spanList) put(it item) {
	l.mu.Lock()
	l.items = append(l.items, it)
	l.mu.Unlock()
}

// ended returns the spans that ended, in the order they ended.
func (l *spanList) ended() []*span {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*span
	for _, it := range l.items {
		if it.op == opEnd {
			out = append(out, it.span)
		}
	}
	return out
}

// TestOpenFileRefusesWhatIsNotOneRegularFile: a locker opens only the regular file an allowed
// name names. A symbolic link named like an allowed file once led it to write-lock a file
// elsewhere, and (as root) to create a dangling link's target; a FIFO blocked it. Each refusal
// is one command span with an error — never an error span and a success span for one command.
func TestOpenFileRefusesWhatIsNotOneRegularFile(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	allowed := filepath.Join(dir, "lock")
	victim := filepath.Join(elsewhere, "victim")
	for _, f := range []string{allowed, victim} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	notCreated := filepath.Join(elsewhere, "created")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(victim, allowed+".link"))
	must(os.Symlink(notCreated, allowed+".dangling"))
	must(unix.Mkfifo(allowed+".fifo", 0o644))
	must(os.Link(victim, allowed+".hard"))
	must(os.Mkdir(allowed+".dir", 0o755))
	cases := []struct {
		suffix string
		ok     bool
	}{
		{"", true}, {".new", true}, // an allowed file, and a new one named by a suffix
		{".link", false}, {".dangling", false}, {".fifo", false}, {".hard", false}, {".dir", false},
	}
	e, rec := testExecutor(t, allowed)
	for i, c := range cases {
		path := allowed + c.suffix
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.openFile(i, &proto.Command{Op: proto.OpFile, Path: path, FD: i})
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("file@%s: openFile did not return", c.suffix)
		}
		var spans []*span
		for _, s := range rec.ended() {
			attrs, _, _, _, _ := s.final()
			for _, a := range attrs {
				if a.Key == semconv.LockCmdIndex && a.Value.AsInt64() == int64(i) {
					spans = append(spans, s)
				}
			}
		}
		if len(spans) != 1 {
			t.Errorf("file@%s: %d command spans, want 1", c.suffix, len(spans))
			continue
		}
		_, _, code, msg, _ := spans[0].final()
		if failed := code == statusError; failed == c.ok {
			t.Errorf("file@%s: status %d %q, want ok=%v", c.suffix, code, msg, c.ok)
		}
		if (e.slots[i] != nil) != c.ok {
			t.Errorf("file@%s: slot open %v, want %v", c.suffix, e.slots[i] != nil, c.ok)
		}
	}
	if _, err := os.Stat(notCreated); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dangling link's target was created: %v", err)
	}
	for _, s := range e.slots {
		if s != nil {
			unix.Close(s.fd)
		}
	}
}
