// Package host reads what the local machine says about files, locks and
// processes: /proc/locks and /proc/PID/fdinfo lock lines, the file system
// (statfs magic and /proc/self/mountinfo) a path lives on, host facts
// (host name, kernel release, Lustre version) and the state of a thread
// (/proc/PID/task/TID/stat, wchan, stack, syscall).
//
// It is a leaf package: it imports only the standard library and
// golang.org/x/sys/unix, so the locker, the observer and the controller can
// all use it for evidence without pulling anything else in.
//
// Everything here is a snapshot of the local node's view. On distributed file
// systems (Lustre, NFS, GlusterFS) /proc/locks shows only the locks of this
// node's processes, and the kernel prints the superblock's device number,
// which for btrfs subvolumes and overlayfs can differ from what stat(2)
// reports for the file (lslocks has the same limitation).
package host
