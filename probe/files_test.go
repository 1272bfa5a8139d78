package probe

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/semconv"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// testExecutor is an executor whose spans go to a recorder, allowed the files in allow.
func testExecutor(t *testing.T, allow ...string) (*executor, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	l := &Locker{opts: Options{Allow: allow}, tracer: tp.Tracer("test"), rootCtx: context.Background(), log: quietLog}
	return &executor{l: l, stop: make(chan struct{})}, rec
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
		var spans []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			for _, a := range s.Attributes() {
				if a.Key == semconv.LockCmdIndex && a.Value.AsInt64() == int64(i) {
					spans = append(spans, s)
				}
			}
		}
		if len(spans) != 1 {
			t.Errorf("file@%s: %d command spans, want 1", c.suffix, len(spans))
			continue
		}
		failed := spans[0].Status().Code == codes.Error
		if failed == c.ok {
			t.Errorf("file@%s: status %v %q, want ok=%v", c.suffix, spans[0].Status().Code, spans[0].Status().Description, c.ok)
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
