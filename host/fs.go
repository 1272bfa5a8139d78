package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// FSInfo describes the file system a path lives on.
type FSInfo struct {
	// Path is the absolute path with symlinks resolved.
	Path string
	// Magic is statfs(2)'s f_type and MagicName its name ("" if unknown).
	Magic     int64
	MagicName string
	// Mount is the mountinfo entry whose mount point is the longest prefix
	// of Path (zero if mountinfo could not be read; see Notes).
	Mount Mount
	// FSType is Mount.FSType ("ext4", "fuse.glusterfs", "lustre", ...).
	FSType string
	// Options are all mount and super options.
	Options []string
	// LockOptions are the options that decide how locks behave on this
	// file system (see LockOptions).
	LockOptions []string
	// Notes say what could not be found out, and why.
	Notes []string
}

// FileSystem reports the file system of path: statfs magic and the
// mountinfo entry. statfs failing is an error; an unreadable mountinfo is
// only a note, so the magic still tells the type.
func FileSystem(path string) (FSInfo, error) {
	var info FSInfo
	abs, err := filepath.Abs(path)
	if err != nil {
		return info, fmt.Errorf("host: file system of %s: %w", path, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	info.Path = abs
	var st unix.Statfs_t
	if err := unix.Statfs(abs, &st); err != nil {
		return info, fmt.Errorf("host: statfs %s: %w", abs, err)
	}
	info.Magic = int64(st.Type) // Type is int32 on some arches
	info.MagicName = MagicName(info.Magic)
	f, err := os.Open(MountInfoPath)
	if err != nil {
		info.Notes = append(info.Notes, fmt.Sprintf("mountinfo: %v", err))
		return info, nil
	}
	defer f.Close()
	mounts, err := ParseMountInfo(f)
	if err != nil {
		// Keep what parsed: one odd line must not hide the rest.
		info.Notes = append(info.Notes, err.Error())
	}
	m, ok := findMount(mounts, abs)
	if !ok {
		info.Notes = append(info.Notes, "no mount point in mountinfo is a prefix of "+abs)
		return info, nil
	}
	info.Mount = m
	info.FSType = m.FSType
	info.Options = m.Options()
	info.LockOptions = LockOptions(m.FSType, info.Options)
	if o := simfsLockOption(m.FSType, m.Source); o != "" {
		info.LockOptions = append(info.LockOptions, o)
	}
	return info, nil
}

// simfsLockOption reads the mode out of a simfs mount's source, "simfs:MODE:PID": FUSE accepts
// no options of a file system's own, so simfs (lockprobe's Lustre stand-in) carries Lustre's
// flock/localflock/noflock there, and it becomes a lock option like Lustre's.
func simfsLockOption(fsType, source string) string {
	if fsType != "fuse.simfs" {
		return ""
	}
	parts := strings.Split(source, ":")
	if len(parts) != 3 || parts[0] != "simfs" {
		return ""
	}
	switch parts[1] {
	case "flock", "localflock", "noflock":
		return parts[1]
	}
	return ""
}

// lockOptionRules lists, per base file system type (before any ".subtype"),
// which options decide locking. Add a file system by adding a row.
var lockOptionRules = map[string]func(name string) bool{
	// Lustre client: flock (coherent cluster-wide), localflock (node
	// local only), noflock (ENOSYS).
	"lustre": oneOf("flock", "localflock", "noflock"),
	// NFS: nolock/lock (NLM on v2/v3), local_lock= (none, all, flock,
	// posix), and the protocol version, which decides NLM versus NFSv4
	// state and what F_GETLK reports as the owner.
	"nfs":  oneOf("lock", "nolock", "local_lock", "vers", "nfsvers", "minorversion"),
	"nfs4": oneOf("lock", "nolock", "local_lock", "vers", "nfsvers", "minorversion"),
	// CIFS/SMB: nobrl stops sending byte-range locks to the server;
	// forcemandatorylock turns POSIX locks into mandatory ones.
	"cifs": oneOf("nobrl", "brl", "forcemandatorylock", "forcemand", "locallease", "nolease", "vers"),
	"smb3": oneOf("nobrl", "brl", "forcemandatorylock", "forcemand", "locallease", "nolease", "vers"),
	// 9p: how long a blocking lock request is retried.
	"9p": oneOf("locktimeout"),
	// GlusterFS (fuse.glusterfs) has no locking options in mountinfo;
	// its locks translator is configured on the volume, server side.
	"fuse": oneOf(),
}

func oneOf(names ...string) func(string) bool {
	return func(n string) bool {
		for _, x := range names {
			if n == x {
				return true
			}
		}
		return false
	}
}

// LockOptions returns the options (as given, "name" or "name=value") that
// decide locking on a file system of type fsType ("nfs4", "fuse.glusterfs").
// Unknown types have none.
func LockOptions(fsType string, options []string) []string {
	base, _, _ := strings.Cut(fsType, ".")
	rule := lockOptionRules[base]
	if rule == nil {
		return nil
	}
	var out []string
	for _, o := range options {
		name, _, _ := strings.Cut(o, "=")
		if rule(name) {
			out = append(out, o)
		}
	}
	return out
}

// magicNames maps statfs f_type values (include/uapi/linux/magic.h and the
// out-of-tree file systems' sources) to names.
var magicNames = map[uint32]string{
	0xEF53:     "ext2/ext3/ext4",
	0x58465342: "xfs",
	0x9123683E: "btrfs",
	0x01021994: "tmpfs",
	0x858458F6: "ramfs",
	0x65735546: "fuse",
	0x65735543: "fusectl",
	0x6969:     "nfs",
	0x0BD00BD0: "lustre",
	0x794C7630: "overlayfs",
	0x47504653: "gpfs",
	0xFF534D42: "cifs",
	0xFE534D42: "smb2",
	0x517B:     "smb",
	0x00C36400: "ceph",
	0x01021997: "9p",
	0x2FC12FC1: "zfs",
	0x19830326: "beegfs",
	0xAAD7AAEA: "panfs",
	0x01161970: "gfs2",
	0x7461636F: "ocfs2",
	0x20030528: "orangefs",
	0xCA451A4E: "bcachefs",
	0xF2F52010: "f2fs",
	0xE0F5E1E2: "erofs",
	0x73717368: "squashfs",
	0x9660:     "isofs",
	0x15013346: "udf",
	0x4D44:     "msdos/vfat",
	0x2011BAB0: "exfat",
	0x5346544E: "ntfs",
	0x7366746E: "ntfs3",
	0x3153464A: "jfs",
	0x52654973: "reiserfs",
	0x3434:     "nilfs2",
	0x958458F6: "hugetlbfs",
	0x9FA0:     "proc",
	0x62656572: "sysfs",
	0x1CD1:     "devpts",
	0x27E0EB:   "cgroup",
	0x63677270: "cgroup2",
	0x64626720: "debugfs",
	0x74726163: "tracefs",
	0x73636673: "securityfs",
	0xCAFE4A11: "bpf",
	0x19800202: "mqueue",
	0x62656570: "configfs",
	0x6E736673: "nsfs",
	0x50495045: "pipefs",
	0x534F434B: "sockfs",
	0x09041934: "anon_inode",
	0x6165676C: "pstore",
	0xDE5E81E4: "efivarfs",
	0x42494E4D: "binfmt_misc",
	0x5A4F4653: "zonefs",
	0x73757245: "coda",
	0x5346414F: "afs",
	0x0187:     "autofs",
	0x28CD3D45: "cramfs",
	0x72B6:     "jffs2",
	0xF15F:     "ecryptfs",
	0x61756673: "aufs",
	0xA501FCF5: "vxfs",
}

// PseudoFS says whether a file system of that name (MagicName) holds no files a process could
// share by path: each process sees its own (/proc/self/...), or the "file" is a kernel
// interface. Locking one proves nothing about any file system.
func PseudoFS(name string) bool {
	switch name {
	case "proc", "sysfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "bpf", "mqueue",
		"configfs", "nsfs", "pipefs", "sockfs", "anon_inode", "pstore", "efivarfs", "binfmt_misc", "fusectl":
		return true
	}
	return false
}

// MagicName names a statfs f_type value; "" if unknown. Only the low 32
// bits count: f_type is a signed long, and 32-bit kernels sign-extend.
func MagicName(magic int64) string {
	return magicNames[uint32(magic)]
}
