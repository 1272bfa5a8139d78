package control

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/semconv"
)

// Event and attribute names of the brick's lock table in the snapshot.
const (
	eventGlusterLock = "gluster.lock"
	glusterState     = "gluster.lock.state" // ACTIVE | BLOCKED
	glusterGranted   = "gluster.lock.granted_at"
	glusterBlocked   = "gluster.lock.blocked_at"
	glusterClientPID = "gluster.lock.client_pid"
	glusterOwner     = "gluster.lock.owner"
	glusterVolume    = "gluster.volume"
)

// glusterEvents takes, for each GlusterFS volume among the run's files, a brick statedump: the
// brick arbitrates every client's locks, and its table is the only view of all of them
// (nothing of a glusterfs lock shows in /proc/locks). The dump is copied into the output folder
// and its posixlk lines become events. It gives up quietly when the gluster command or the
// volume cannot be reached: this is extra evidence, never a reason for a run to fail.
func (r *run) glusterEvents() []*tracepb.Span_Event {
	var out []*tracepb.Span_Event
	done := map[string]bool{}
	for _, ff := range r.files {
		fs := ff.fs
		if ff.fsErr != nil || fs.FSType != "fuse.glusterfs" {
			continue
		}
		vol := fs.Mount.Source
		if i := strings.LastIndex(vol, ":"); i >= 0 {
			vol = vol[i+1:]
		}
		vol = strings.TrimPrefix(vol, "/")
		if vol == "" || done[vol] {
			continue
		}
		done[vol] = true
		dump, err := r.statedump(vol)
		if err != nil {
			r.opts.Log.Warn("gluster statedump", "volume", vol, "err", err)
			continue
		}
		_ = os.WriteFile(filepath.Join(r.opts.OutDir, "gluster-statedump-"+vol+".txt"), dump, 0o600)
		locks, err := host.ParseStatedump(bytes.NewReader(dump))
		if err != nil {
			r.opts.Log.Warn("gluster statedump", "volume", vol, "err", err)
			continue
		}
		now := uint64(time.Now().UnixNano())
		for _, l := range locks {
			if l.Kind != "posixlk" {
				continue
			}
			state := "ACTIVE"
			if l.Blocked {
				state = "BLOCKED"
			}
			attrs := []*commonpb.KeyValue{
				str(glusterVolume, vol), str(glusterState, state), str(semconv.ProcLockRW, l.Mode),
				num(semconv.ProcLockSt, l.Start), num(semconv.LockLen, l.Len), num(semconv.ProcLockPI, l.PID),
				str(glusterOwner, l.Owner), num(glusterClientPID, int64(l.ClientPID)), str(semconv.FilePath, l.Path),
				str(semconv.ProcLockRa, l.Raw),
			}
			if !l.GrantedAt.IsZero() {
				attrs = append(attrs, num(glusterGranted, l.GrantedAt.UnixNano()))
			}
			if !l.BlockedAt.IsZero() {
				attrs = append(attrs, num(glusterBlocked, l.BlockedAt.UnixNano()))
			}
			out = append(out, &tracepb.Span_Event{TimeUnixNano: now, Name: eventGlusterLock, Attributes: attrs})
		}
	}
	return out
}

// gluster runs the gluster command line with the run's socket option.
func (r *run) gluster(ctx context.Context, args ...string) ([]byte, error) {
	full := []string{"--mode=script"}
	if r.opts.GlusterSocket != "" {
		full = append(full, "--glusterd-sock="+r.opts.GlusterSocket)
	}
	full = append(full, args...)
	out, err := exec.CommandContext(ctx, "gluster", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("gluster %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// statedump asks the brick for a dump and reads it from the volume's statedump path.
func (r *run) statedump(vol string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := r.gluster(ctx, "volume", "get", vol, "server.statedump-path")
	if err != nil {
		return nil, err
	}
	dir := "/var/run/gluster"
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "server.statedump-path" {
			dir = f[1]
		}
	}
	since := time.Now().Add(-time.Second)
	if _, err := r.gluster(ctx, "volume", "statedump", vol); err != nil {
		return nil, err
	}
	for ctx.Err() == nil {
		files, _ := filepath.Glob(filepath.Join(dir, "*.dump.*"))
		for _, f := range files {
			st, err := os.Stat(f)
			if err != nil || st.ModTime().Before(since) {
				continue
			}
			b, err := os.ReadFile(f)
			if err == nil && bytes.Contains(b, []byte("\nDUMP-END-TIME:")) {
				return b, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("no complete statedump of %s in %s", vol, dir)
}
