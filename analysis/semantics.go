package analysis

import (
	"slices"
	"strings"

	"github.com/lockprobe/lockprobe/lockmodel"
	"github.com/lockprobe/lockprobe/semconv"
)

// Semantics is how the run's file system arbitrates locks, as far as it changes a verdict: the
// conflict model (lockmodel.Semantics) and what the reports say about it. The analysis learns it
// from the lockers' file-system facts (fs.type from the statfs magic, fs.mount.type from
// mountinfo, fs.lock.options): never from what the scenario wanted.
type Semantics struct {
	// FS names the file system and the option that decided, for the reports ("lustre -o flock").
	FS string
	// SharedKinds: flock and fcntl (posix, OFD) locks share one resource and conflict with each
	// other, a flock lock covering the whole file. Lustre with -o flock (one LDLM resource per
	// file) and GlusterFS (flock becomes a whole-file posix lock on the brick) do this; a local
	// Linux file system keeps flock and fcntl locks in two tables that never meet.
	SharedKinds bool
	// NodeLocal: each node's kernel arbitrates its own locks and nothing is arbitrated across
	// nodes (Lustre -o localflock): two nodes may both hold a write lock, by configuration.
	NodeLocal bool
	// Option is the mount option that set NodeLocal or SharedKinds ("" when none did).
	Option string
}

// localSemantics is a local Linux file system's.
var localSemantics = Semantics{FS: "local"}

// semanticsOf reads the semantics from the facts of the lockers' file systems. A run's files
// live on one file system as a rule; when they do not, a distributed one decides.
func semanticsOf(lockers []*Locker) Semantics {
	for _, l := range lockers {
		if s, ok := fsSemantics(l.Facts); ok {
			return s
		}
	}
	return localSemantics
}

// fsSemantics gives the semantics of one file system's facts, ok when it is not a local one.
// simfs (fuse.simfs) is lockprobe's stand-in for Lustre: its mount source carries Lustre's
// lock option (host reads it into fs.lock.options), and it means what that option means on
// Lustre.
func fsSemantics(facts map[string]string) (Semantics, bool) {
	typ := facts[semconv.FSMountType]
	magic := facts[semconv.FSType]
	opts := strings.Split(facts[semconv.FSLockOpts], ",")
	lustre := typ == "lustre" || magic == "lustre"
	simfs := typ == "fuse.simfs"
	switch {
	case lustre || simfs:
		name := "lustre"
		if simfs {
			name = "simfs (Lustre's semantics)"
		}
		switch {
		case slices.Contains(opts, "localflock"):
			return Semantics{FS: name + " -o localflock", NodeLocal: true, Option: "localflock"}, true
		case slices.Contains(opts, "noflock"):
			return Semantics{FS: name + " -o noflock", Option: "noflock"}, true
		case slices.Contains(opts, "flock"):
			return Semantics{FS: name + " -o flock", SharedKinds: true, Option: "flock"}, true
		}
		// No lock option in mountinfo: recent clients default to flock.
		return Semantics{FS: name, SharedKinds: true}, true
	case typ == "fuse.glusterfs":
		return Semantics{FS: "glusterfs", SharedKinds: true}, true
	}
	return Semantics{}, false
}

// lock is the conflict model of the semantics.
func (s Semantics) lock() lockmodel.Semantics {
	return lockmodel.Semantics{FlockWithFcntl: s.SharedKinds}
}
