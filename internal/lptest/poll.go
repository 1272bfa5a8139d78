package lptest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/tracefile"
)

// WaitUntil polls cond every interval until it returns true or an error, or ctx ends; what
// names the wait in the error.
func WaitUntil(ctx context.Context, interval time.Duration, what string, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// Watch reads the trace of a run still being written (its output folder) every 50 ms until cond
// holds or ctx ends.
func Watch(ctx context.Context, out string, cond func(*tracefile.Trace) bool) error {
	return WaitUntil(ctx, 50*time.Millisecond, "the trace in "+out, func() (bool, error) {
		tr, err := tracefile.Open(out)
		return err == nil && cond(tr), nil
	})
}

// LockerID reads a span's locker id from the span or its resource (-100 when neither has one).
func LockerID(s *tracefile.Span) int64 {
	if v, ok := s.Attrs.Int(semconv.LockerID); ok {
		return v
	}
	return s.Resource.IntOr(semconv.LockerID, -100)
}

// Node reads a span's node from the span or its resource.
func Node(s *tracefile.Span) string {
	if v := s.Attrs.Str(semconv.Node); v != "" {
		return v
	}
	return s.Resource.Str(semconv.Node)
}

// ExitCode is the exit status of a command that ran (err from Wait or Run): 0, or its
// ExitError's code; any other error (it could not start, its output failed) is returned.
func ExitCode(err error) (int, error) {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitCode(), nil
	}
	return 0, err
}
