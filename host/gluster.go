package host

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// GlusterLock is one lock line of a GlusterFS brick statedump (the
// features/locks translator's section, written by `gluster volume
// statedump VOL`), as printed by GlusterFS 10.x:
//
//	posixlk.posixlk[0](ACTIVE)=type=WRITE, whence=0, start=0, len=0, pid = 7066, owner=b6b4971829c38945, client=0x7f1674050348, connection-id=CTX_ID:2de9...-GRAPH_ID:0-PID:5660-HOST:vm-PC_NAME:lpv1-client-0-RECON_NO:-0, granted at 2026-11-25 19:21:45 +0000
//
// The brick is the arbiter of every lock taken through any client (mount),
// so its dump is the one place that shows all nodes' locks and waiters.
// Inodelk and entrylk lines (internal locks of AFR, EC, DHT) are parsed
// too; applications' fcntl, OFD and flock locks all appear as posixlk.
type GlusterLock struct {
	// Kind is "posixlk", "inodelk" or "entrylk".
	Kind string
	// Index is the number in brackets: the position in the inode's list.
	Index int
	// Blocked is true for a "(BLOCKED)" entry: a request that waits. An
	// "(ACTIVE)" entry is granted on the brick, whether or not the client
	// has delivered the grant to the process yet.
	Blocked bool
	// Mode is READ or WRITE for range locks; ENTRYLK_RDLCK or ENTRYLK_WRLCK
	// for entry locks.
	Mode string
	// Whence, Start and Len are the range as the client sent it; Len 0
	// means to the end of the file. Entry locks have no range.
	Whence     int
	Start, Len int64
	// Basename is the directory entry an entrylk is about.
	Basename string
	// PID is the pid the brick recorded: the caller's id on its own node as
	// FUSE passed it, which is the calling thread's id (it equals the
	// process id only when the main thread made the call). F_GETLK through
	// a mount reports the process id instead.
	PID int64
	// Owner is the lock owner in hex: one value per POSIX owner (process
	// on its node) or per open file description (OFD and flock locks).
	Owner string
	// Client is the brick's pointer for the client connection; equal
	// values mean the same connection.
	Client string
	// ConnectionID is the client connection's id; ClientPID, ClientHost
	// and ClientName are taken from it (the glusterfs client process, the
	// node it runs on and the client translator's name). ClientPID is 0
	// when the id does not carry one.
	ConnectionID string
	ClientPID    int
	ClientHost   string
	ClientName   string
	// GrantedAt and BlockedAt are when the brick granted or queued the
	// request (one-second resolution); zero when the line has none. An
	// ACTIVE entry with both was blocked first, then granted.
	GrantedAt, BlockedAt time.Time
	// Path is the file's path inside the volume ("/data.lock"), GFID the
	// inode's gfid, Domain the inodelk/entrylk domain; "" when the dump
	// did not say.
	Path, GFID, Domain string
	// Line is the 1-based line number in the dump, Raw the line itself.
	Line int
	Raw  string
}

// glusterTimeLayouts are the formats GlusterFS used for "granted at" and
// "blocked at": gf_time_fmt's default since 3.x, and ctime_r's before.
var glusterTimeLayouts = []string{
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
	"Mon Jan _2 15:04:05 2006",
}

// ParseStatedump reads a brick statedump and returns its lock entries in
// the order they appear. Lines that are not lock entries are skipped; a lock
// entry whose required fields (type, pid, and for range locks whence, start
// and len) cannot be read is an error naming the line.
func ParseStatedump(r io.Reader) ([]GlusterLock, error) {
	sc := bufio.NewScanner(r)
	// The dump's lines are short, but one with a long connection id or
	// path must not stop the scan.
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	var (
		out                []GlusterLock
		path, gfid, domain string
		lineNo             int
	)
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, "["):
			// The gfid comes from the inode table section just before the
			// locks section of the same inode: keep it across that one step.
			path, domain = "", ""
			if !strings.Contains(line, "features.locks") {
				gfid = ""
			}
			continue
		case strings.HasPrefix(line, "gfid="):
			gfid = strings.TrimPrefix(line, "gfid=")
			continue
		case strings.HasPrefix(line, "path="):
			path = strings.TrimPrefix(line, "path=")
			continue
		case strings.HasSuffix(keyOf(line), "lock-dump.domain.domain"):
			domain = line[strings.IndexByte(line, '=')+1:]
			continue
		}
		kind, idx, blocked, rest, ok := lockKey(line)
		if !ok {
			continue
		}
		lk, err := parseGlusterLock(kind, rest)
		if err != nil {
			return out, fmt.Errorf("statedump line %d: %w", lineNo, err)
		}
		lk.Index, lk.Blocked = idx, blocked
		lk.Path, lk.GFID, lk.Domain = path, gfid, domain
		lk.Line, lk.Raw = lineNo, line
		out = append(out, lk)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("reading statedump: %w", err)
	}
	return out, nil
}

// keyOf returns the part of a "key=value" line before the first '='.
func keyOf(line string) string {
	if i := strings.IndexByte(line, '='); i >= 0 {
		return line[:i]
	}
	return ""
}

// lockKey recognises a lock entry's key, such as "posixlk.posixlk[3](BLOCKED)"
// or "xlator.feature.locks.lock-dump.domain.entrylk.entrylk[0](ACTIVE)", and
// returns the kind, index, state and the value after '='.
func lockKey(line string) (kind string, idx int, blocked bool, rest string, ok bool) {
	eq := strings.Index(line, ")=")
	if eq < 0 {
		return "", 0, false, "", false
	}
	key, rest := line[:eq+1], line[eq+2:]
	switch {
	case strings.HasSuffix(key, "(ACTIVE)"):
		key = strings.TrimSuffix(key, "(ACTIVE)")
	case strings.HasSuffix(key, "(BLOCKED)"):
		key, blocked = strings.TrimSuffix(key, "(BLOCKED)"), true
	default:
		return "", 0, false, "", false
	}
	if !strings.HasSuffix(key, "]") {
		return "", 0, false, "", false
	}
	open := strings.LastIndexByte(key, '[')
	if open < 0 {
		return "", 0, false, "", false
	}
	n, err := strconv.Atoi(key[open+1 : len(key)-1])
	if err != nil || n < 0 {
		return "", 0, false, "", false
	}
	name := key[:open]
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	switch name {
	case "posixlk", "inodelk", "entrylk":
		return name, n, blocked, rest, true
	}
	return "", 0, false, "", false
}

// parseGlusterLock reads the value of a lock entry: comma-separated fields
// as written by pl_dump_lock and the entrylk dumper.
func parseGlusterLock(kind, s string) (GlusterLock, error) {
	lk := GlusterLock{Kind: kind}
	var seen struct{ typ, pid, whence, start, len bool }
	for _, f := range strings.Split(s, ", ") {
		var err error
		switch {
		case strings.HasPrefix(f, "type="):
			v := strings.TrimPrefix(f, "type=")
			if t, base, found := strings.Cut(v, " on basename="); found {
				v, lk.Basename = t, base
			}
			if v == "" {
				return lk, errors.New("empty lock type")
			}
			lk.Mode, seen.typ = v, true
		case strings.HasPrefix(f, "whence="):
			var w int64
			w, err = strconv.ParseInt(strings.TrimPrefix(f, "whence="), 10, 16)
			lk.Whence, seen.whence = int(w), true
		case strings.HasPrefix(f, "start="):
			lk.Start, err = parseOffset(strings.TrimPrefix(f, "start="))
			seen.start = true
		case strings.HasPrefix(f, "len="):
			lk.Len, err = parseOffset(strings.TrimPrefix(f, "len="))
			seen.len = true
		case strings.HasPrefix(f, "pid = "):
			lk.PID, err = parsePID(strings.TrimPrefix(f, "pid = "))
			seen.pid = true
		case strings.HasPrefix(f, "owner="):
			lk.Owner = strings.TrimPrefix(f, "owner=")
		case strings.HasPrefix(f, "client="):
			lk.Client = strings.TrimPrefix(f, "client=")
		case strings.HasPrefix(f, "connection-id="):
			lk.ConnectionID = strings.TrimPrefix(f, "connection-id=")
			lk.ClientPID, lk.ClientHost, lk.ClientName = parseConnectionID(lk.ConnectionID)
		case strings.HasPrefix(f, "granted at "):
			lk.GrantedAt, err = parseGlusterTime(strings.TrimPrefix(f, "granted at "))
		case strings.HasPrefix(f, "blocked at "):
			lk.BlockedAt, err = parseGlusterTime(strings.TrimPrefix(f, "blocked at "))
		}
		if err != nil {
			return lk, fmt.Errorf("%s lock field %q: %w", kind, f, err)
		}
	}
	if !seen.typ || !seen.pid {
		return lk, fmt.Errorf("%s lock without type or pid: %q", kind, s)
	}
	if kind != "entrylk" && !(seen.whence && seen.start && seen.len) {
		return lk, fmt.Errorf("%s lock without whence, start or len: %q", kind, s)
	}
	return lk, nil
}

// parseOffset reads a start or length, printed with %llu: a value past
// MaxInt64 cannot be a real offset.
func parseOffset(s string) (int64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("offset %d out of range", v)
	}
	return int64(v), nil
}

// parsePID reads the pid, printed with %llu of a signed pid: GlusterFS's
// internal clients (self-heal -6, rebalance -3, ...) come out as values
// near 2^64, which are turned back into the negative pid they stand for.
func parsePID(s string) (int64, error) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return int64(v), nil // wraps on purpose: two's complement of the pid
}

// parseGlusterTime reads a "granted at" or "blocked at" time; times without
// a zone are UTC, as gf_time_fmt writes them.
func parseGlusterTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range glusterTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unknown time format %q", s)
}

// parseConnectionID takes the client's pid, host and translator name out of
// a connection id such as
// "CTX_ID:…-GRAPH_ID:0-PID:5660-HOST:vm-PC_NAME:lpv1-client-0-RECON_NO:-0".
// Host names may contain '-', so each field ends where the next label starts.
func parseConnectionID(id string) (pid int, hostName, name string) {
	field := func(label, next string) string {
		i := strings.Index(id, label)
		if i < 0 {
			return ""
		}
		v := id[i+len(label):]
		if j := strings.Index(v, next); j >= 0 {
			v = v[:j]
		}
		return v
	}
	if v := field("-PID:", "-HOST:"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			pid = n
		}
	}
	return pid, field("-HOST:", "-PC_NAME:"), field("-PC_NAME:", "-RECON_NO:")
}
