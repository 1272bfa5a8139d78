package control

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/semconv"
	"github.com/lockprobe/lockprobe/simfs/locktable"
)

// simfsEvents asks every simfs among the run's files for its lock table, over the control
// socket beside its mounts (never through a mount), copies the dump into the output folder and
// turns its locks and its log (faults acting, evictions) into events: the lock server's own
// view, as the brick statedump is on GlusterFS. It gives up quietly, as glusterEvents does.
func (r *run) simfsEvents() []*tracepb.Span_Event {
	var out []*tracepb.Span_Event
	done := map[string]bool{}
	for _, ff := range r.files {
		if ff.fsErr != nil || ff.fs.FSType != "fuse.simfs" {
			continue
		}
		sock := locktable.SocketFor(ff.fs.Mount.MountPoint)
		if done[sock] {
			continue
		}
		done[sock] = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		dump, err := locktable.Fetch(ctx, sock)
		cancel()
		if err != nil {
			r.opts.Log.Warn("simfs lock table", "socket", sock, "err", err)
			continue
		}
		name := "simfs-locks.txt"
		if len(done) > 1 {
			name = fmt.Sprintf("simfs-locks-%d.txt", len(done))
		}
		_ = os.WriteFile(filepath.Join(r.opts.OutDir, name), dump, 0o600)
		t, err := locktable.Parse(bytes.NewReader(dump))
		if err != nil {
			r.opts.Log.Warn("simfs lock table", "socket", sock, "err", err)
			continue
		}
		at := uint64(t.At.UnixNano())
		for _, l := range t.Locks {
			attrs := []*commonpb.KeyValue{
				num(semconv.SimfsLockID, int64(l.ID)), str(semconv.SimfsState, string(l.State)), num(semconv.SimfsNode, int64(l.Node)),
				num(semconv.ProcLockPI, l.PID), str(semconv.SimfsKind, l.Kind), str(semconv.ProcLockRW, l.Type),
				num(semconv.ProcLockSt, l.Start), num(semconv.SimfsEnd, l.End), str(semconv.FilePath, l.Path),
				num(semconv.SimfsBlockedBy, int64(l.BlockedBy)), str(semconv.SimfsMode, t.Mode),
			}
			if !l.Granted.IsZero() {
				attrs = append(attrs, num(semconv.SimfsGranted, l.Granted.UnixNano()))
			}
			if !l.Enqueued.IsZero() {
				attrs = append(attrs, num(semconv.SimfsEnqueued, l.Enqueued.UnixNano()))
			}
			out = append(out, &tracepb.Span_Event{TimeUnixNano: at, Name: semconv.EventSimfsLock, Attributes: attrs})
		}
		for _, e := range t.Events {
			out = append(out, &tracepb.Span_Event{TimeUnixNano: uint64(e.At.UnixNano()), Name: semconv.EventSimfsEvent, Attributes: []*commonpb.KeyValue{
				num(semconv.SimfsLockID, int64(e.Lock)), num(semconv.SimfsNode, int64(e.Node)), str(semconv.SimfsWhat, e.What),
			}})
		}
	}
	return out
}
