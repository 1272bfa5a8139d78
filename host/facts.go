package host

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// lustreVersionPaths are where Lustre clients publish their version: sysfs
// on 2.12 and later, procfs before.
var lustreVersionPaths = []string{"/sys/fs/lustre/version", "/proc/fs/lustre/version"}

// Facts are what a bug ticket needs to know about the node and the file.
type Facts struct {
	Hostname      string
	KernelRelease string
	// KernelVersion is uname's version string (build number and date).
	KernelVersion string
	Machine       string
	// LustreVersion is empty when no Lustre client is loaded.
	LustreVersion string
	FS            FSInfo
	// Notes say which pieces are missing and why.
	Notes []string
}

// ReadFacts gathers Facts for path. It never fails as a whole: a piece that
// cannot be read stays empty and a note says why.
func ReadFacts(path string) Facts {
	var f Facts
	if h, err := os.Hostname(); err != nil {
		f.Notes = append(f.Notes, fmt.Sprintf("hostname: %v", err))
	} else {
		f.Hostname = h
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		f.Notes = append(f.Notes, fmt.Sprintf("uname: %v", err))
	} else {
		f.KernelRelease = unix.ByteSliceToString(u.Release[:])
		f.KernelVersion = unix.ByteSliceToString(u.Version[:])
		f.Machine = unix.ByteSliceToString(u.Machine[:])
	}
	f.LustreVersion = lustreVersion()
	fs, err := FileSystem(path)
	if err != nil {
		f.Notes = append(f.Notes, err.Error())
	}
	f.FS = fs
	f.Notes = append(f.Notes, fs.Notes...)
	return f
}

// lustreVersion reads the loaded Lustre client's version, "" if none.
func lustreVersion() string {
	for _, p := range lustreVersionPaths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if v := parseLustreVersion(string(b)); v != "" {
			return v
		}
	}
	return ""
}

// parseLustreVersion accepts "2.15.4\n" (sysfs) and the older procfs form
// "lustre: 2.10.8\nkernel: patchless_client\nbuild: ...".
func parseLustreVersion(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	first = strings.TrimSpace(first)
	if v, ok := strings.CutPrefix(first, "lustre:"); ok {
		return strings.TrimSpace(v)
	}
	return first
}
