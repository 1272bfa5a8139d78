// Package simfs is a FUSE file system whose locks behave like Lustre's distributed lock manager
// (LDLM), with faults on demand. One process serves one file tree through K mounts
// (DIR/node0 … DIR/nodeK-1), each standing for one client node; every mount's lock requests go
// to one in-process Manager, as every Lustre client's go to one lock server.
//
// What it models, from lustre-release and its tickets:
//   - Mode flock (Lustre's -o flock): locks are global across nodes, and flock(2) and fcntl locks
//     share one resource, so they conflict (on a local Linux file system they do not).
//   - Mode localflock: locks are the kernel's own, per mount (node): two nodes both get the lock.
//   - Mode noflock: every lock call fails with ENOSYS.
//   - F_GETLK names the holder's pid as on the holder's own node, with no node id.
//   - The server detects deadlocks for posix, OFD and flock alike, but by default follows only
//     the first conflicting lock of each waiter (LU-13991): some cycles get EDEADLK, others hang.
//   - A blocked request waits for its completion with no timeout and no re-poll.
//
// Faults (Fault, ParseFault) drop or delay a grant's completion, leave an unlocked lock behind
// (LU-12828), evict a node, or change the deadlock detection.
//
// The mount source is "simfs:MODE:PID": lockprobe's host facts read MODE as the mount's lock
// option (as Lustre's flock/localflock/noflock), and a later simfs (or -cleanup) reads PID to tell
// a dead mount from a live one. Beside the mounts, DIR/.simfs.sock answers "dump" with the lock
// table (Manager.Dump), which lockprobe attaches to a run on simfs.
package simfs
