package host

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MountInfoPath is the calling process's view of its mounts.
const MountInfoPath = "/proc/self/mountinfo"

// Mount is one line of /proc/PID/mountinfo (see proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
type Mount struct {
	ID, ParentID       int
	DevMajor, DevMinor uint32
	// Root is the path inside the file system that is mounted here.
	Root string
	// MountPoint is the mount point relative to the process's root, with
	// octal escapes (\040 for a space) decoded.
	MountPoint string
	// MountOptions are the per-mount options (rw, noatime, ...).
	MountOptions []string
	// Optional are the optional fields (shared:N, master:N, ...).
	Optional []string
	// FSType is the type with its subtype, e.g. "ext4" or "fuse.glusterfs".
	FSType string
	// Source is the mount source ("/dev/vda", "server:/export", "none").
	Source string
	// SuperOptions are the per-superblock options; file system specific
	// options such as Lustre's flock or NFS's local_lock= are here.
	SuperOptions []string
}

// ParseMountInfo parses mountinfo text. A malformed line is an error naming
// its line number.
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		m, err := ParseMountInfoLine(sc.Text())
		if err != nil {
			return out, fmt.Errorf("host: mountinfo line %d: %w", lineNo, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("host: read mountinfo: %w", err)
	}
	return out, nil
}

// ParseMountInfoLine parses one mountinfo line.
func ParseMountInfoLine(line string) (Mount, error) {
	var m Mount
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return m, fmt.Errorf("malformed mountinfo line (want 6 fields, optional fields, \"-\", 3 fields): %q", line)
	}
	if len(f) > sep+4 {
		// Sources and options have their spaces escaped, so there
		// is nothing after the super options.
		return m, fmt.Errorf("malformed mountinfo line (extra fields after super options): %q", line)
	}
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return m, fmt.Errorf("mount id %q: %w", f[0], err)
	}
	if m.ParentID, err = strconv.Atoi(f[1]); err != nil {
		return m, fmt.Errorf("parent id %q: %w", f[1], err)
	}
	maj, minor, ok := strings.Cut(f[2], ":")
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(minor, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return m, fmt.Errorf("device %q is not major:minor", f[2])
	}
	m.DevMajor, m.DevMinor = uint32(a), uint32(b)
	m.Root = unescapeOctal(f[3])
	m.MountPoint = unescapeOctal(f[4])
	m.MountOptions = splitOptions(f[5])
	if sep > 6 {
		m.Optional = f[6:sep]
	}
	m.FSType = unescapeOctal(f[sep+1])
	m.Source = unescapeOctal(f[sep+2])
	if len(f) > sep+3 {
		m.SuperOptions = splitOptions(f[sep+3])
	}
	return m, nil
}

// Options returns the mount options followed by the super options.
func (m *Mount) Options() []string {
	out := make([]string, 0, len(m.MountOptions)+len(m.SuperOptions))
	out = append(out, m.MountOptions...)
	return append(out, m.SuperOptions...)
}

func splitOptions(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = unescapeOctal(p)
	}
	return parts
}

// unescapeOctal decodes the kernel's mangle() escapes: a backslash and three
// octal digits (\040 space, \011 tab, \012 newline, \134 backslash).
// Anything else is kept as is.
func unescapeOctal(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			if s[i+1] <= '3' {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// findMount returns the mount whose mount point is the longest prefix of the
// absolute, symlink-free path; of equal mount points the last listed (the
// one mounted on top) wins.
func findMount(mounts []Mount, path string) (Mount, bool) {
	best, found := -1, false
	for i := range mounts {
		mp := mounts[i].MountPoint
		if !pathHasPrefix(path, mp) {
			continue
		}
		if !found || len(mp) >= len(mounts[best].MountPoint) {
			best, found = i, true
		}
	}
	if !found {
		return Mount{}, false
	}
	return mounts[best], true
}

// pathHasPrefix reports whether dir is path or one of its ancestors.
func pathHasPrefix(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir) && path[len(dir)] == '/'
}
