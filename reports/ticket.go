package reports

import (
	"path"
	"strings"
)

// Command is one shell command a file-system developer will ask for, with why.
type Command struct {
	Line string
	Why  string
}

// Ticket is the "For the ticket" section: what else to collect, by file system type.
type Ticket struct {
	FS       string // lustre | nfs | glusterfs | local
	Title    string
	Note     string
	Commands []Command
}

// fsFamily reads the file system family off the host facts.
func fsFamily(hosts []HostView) (family string, mount HostView) {
	family = "local"
	for _, h := range hosts {
		t := strings.ToLower(h.FSType + " " + h.MountType)
		switch {
		case strings.Contains(t, "simfs"):
			return "simfs", h
		case strings.Contains(t, "lustre"):
			return "lustre", h
		case strings.Contains(t, "glusterfs"):
			family, mount = "glusterfs", h
		case strings.Contains(t, "nfs") && family == "local":
			family, mount = "nfs", h
		case mount.Node == "" && family == "local":
			mount = h
		}
	}
	return family, mount
}

// ticketFor lists the commands for the file system the run used.
func ticketFor(hosts []HostView) Ticket {
	family, h := fsFamily(hosts)
	switch family {
	case "lustre":
		return Ticket{FS: family, Title: "Lustre",
			Note:     "Run these on every client that took part (and the debug dump on the MDS/OSS too) while the hang is still there, then attach the files.",
			Commands: lustreCommands}
	case "simfs":
		return Ticket{FS: family, Title: "Lustre (rehearsed on simfs)",
			Note: "This run went through simfs, lockprobe's FUSE stand-in for Lustre's lock manager: its lock table (simfs-locks.txt beside this report, with the faults it was told to inject) is what ldlm.dump_namespaces shows on Lustre. " +
				"On the real file system, a Lustre developer will ask for these, from every client that took part (and the debug dump on the MDS/OSS too), taken while the hang is still there.",
			Commands: lustreCommands}
	case "nfs":
		return Ticket{FS: family, Title: "NFS",
			Note: "Turn the debugging on before reproducing; the messages go to the kernel log (dmesg or journalctl -k).",
			Commands: []Command{
				{"rpcdebug -m nfs -s lock", "NFS client lock debugging"},
				{"rpcdebug -m nlm -s all", "NLM (NFSv3 lock manager) debugging"},
				{"cat /proc/locks", "the local kernel's view of the file's locks"},
				{"nfsstat", "client RPC and operation counters"},
				{"nfsstat -m", "mount options of every NFS mount (version, lock/nolock, local_lock)"},
				{"echo w > /proc/sysrq-trigger", "kernel stacks of the blocked tasks into dmesg"},
			}}
	case "glusterfs":
		vol := glusterVolume(h.MountSource)
		if vol == "" {
			vol = "VOL"
		}
		return Ticket{FS: family, Title: "GlusterFS",
			Note: "A statedump lists every lock the bricks' locks translator holds and who waits; it lands in the statedump directory (gluster --print-statedumpdir, usually /var/run/gluster) on each brick server.",
			Commands: []Command{
				{"gluster volume statedump " + vol, "dump the brick processes' state, locks included"},
				{"gluster --print-statedumpdir", "where the dump files land"},
				{"gluster volume info " + vol, "volume options (locks, performance translators)"},
				{"cat " + glusterClientLog(h.MountPoint), "the FUSE client log of this mount"},
				{"cat /proc/locks", "the local kernel's view of the file's locks"},
			}}
	}
	return Ticket{FS: "local", Title: "local file system",
		Note: "On a local file system the kernel's own lock table and the blocked tasks' stacks are what a developer needs.",
		Commands: []Command{
			{"cat /proc/locks", "every lock the kernel knows, holders and -> waiters"},
			{"echo w > /proc/sysrq-trigger", "kernel stacks of all blocked (D state) tasks into dmesg"},
			{"dmesg | tail -n 200", "read those stacks"},
		}}
}

// lustreCommands are what a Lustre developer asks for about a lock hang.
var lustreCommands = []Command{
	{"lctl set_param debug=+dlmtrace", "log the distributed lock manager's traffic (before reproducing)"},
	{"lctl set_param ldlm.dump_namespaces=1", "dump every LDLM namespace and its locks into the debug log"},
	{"lctl dk /tmp/lustre-debug.txt", "save the kernel debug log"},
	{"cat /proc/PID/stack", "the kernel stack of each blocked locker (pids in the table above): a waiter for a lost callback sits in ldlm_flock_completion_ast"},
	{"echo t > /proc/sysrq-trigger", "dump every task's kernel stack into dmesg (then: dmesg > /tmp/dmesg.txt)"},
	{"grep lustre /proc/mounts", "the client's mount options: flock, localflock or noflock decide whether locks are global"},
	{"lctl get_param ldlm.namespaces.*.lock_count", "granted lock counts per namespace"},
	{"lctl get_param version", "the Lustre version of each node"},
	{"cat /proc/locks", "the local kernel's view of the file's locks"},
}

// glusterVolume reads the volume name off a mount source "server:/vol" or "server:vol".
func glusterVolume(source string) string {
	i := strings.LastIndex(source, ":")
	if i < 0 {
		return ""
	}
	return strings.TrimPrefix(source[i+1:], "/")
}

// glusterClientLog is where the FUSE client logs: the mount point with its slashes turned into
// dashes under /var/log/glusterfs.
func glusterClientLog(mountPoint string) string {
	mp := strings.Trim(path.Clean("/"+mountPoint), "/")
	if mp == "" {
		return "/var/log/glusterfs/*.log"
	}
	return "/var/log/glusterfs/" + strings.ReplaceAll(mp, "/", "-") + ".log"
}
