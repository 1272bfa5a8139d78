package locktable

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"
)

// SocketName is the control socket's name, in the folder that holds the mounts.
const SocketName = ".simfs.sock"

// Request is what a client writes to ask for a dump.
const Request = "dump\n"

// maxDump bounds what Fetch reads: a table far larger than any run's is no dump.
const maxDump = 64 << 20

// SocketFor returns the control socket of the simfs that serves the mount at mountPoint
// (DIR/nodeK): it lives in DIR.
func SocketFor(mountPoint string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(mountPoint)), SocketName)
}

// Fetch asks the simfs listening on sock for its lock table and returns the dump's text. It
// never waits past ctx's deadline (a second when ctx has none).
func Fetch(ctx context.Context, sock string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Second)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("locktable: %w", err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := io.WriteString(c, Request); err != nil {
		return nil, fmt.Errorf("locktable: ask %s: %w", sock, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, maxDump+1))
	if err != nil {
		return nil, fmt.Errorf("locktable: read %s: %w", sock, err)
	}
	if len(b) > maxDump {
		return nil, fmt.Errorf("locktable: %s sent more than %d bytes", sock, maxDump)
	}
	return b, nil
}
