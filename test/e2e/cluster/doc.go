// Package cluster builds a test cluster on one machine, for lockprobe's runs across nodes: N
// nodes, each a network namespace (a veth pair on a bridge, an address of its own) with its own
// UTS namespace (its own host name), PID namespace (pids collide across nodes, as on a real
// cluster) and mount namespace (a node-local /tmp and /run). Around them, all optional:
//
//   - Slurm: one munged and one slurmctld in the root namespace, one slurmd per node started
//     inside the node, so that `srun -N3 hostname` prints three host names. Commands need the
//     cluster's SLURM_CONF (Env).
//   - ssh: one sshd per node from Debian's openssh-server, a key made for the test, and a client
//     configuration (SSHConfig) that names the nodes, for `ssh -F`.
//   - GlusterFS: a private glusterd (package gluster) bound to the bridge's address, one volume,
//     and one FUSE client per node started inside that node, so the volume is mounted at the same
//     path (Mount) on every node and nowhere in the root namespace.
//
// A node is `nsenter --net=NETNS unshare --uts --mount --pid --fork --mount-proc sh init.sh`: the
// shell init sets the host name, drops the copies of other FUSE and namespace mounts, mounts
// tmpfs on /tmp and /run, starts the node's daemons in the background and waits, reaping what is
// reparented to it (slurmd as pid 1 would leave its step daemons as zombies) and forwarding
// SIGTERM to its children (a pid 1 gets only the signals it handles). Killing the init takes the
// whole node with it: its processes, its mount and its client.
//
// Partition(i) sets the host side of node i's veth down, which cuts the node silently (its own
// side still looks up); Heal(i) sets it up again and flushes the node's neighbour table, without
// which the node may see "no route to host" for a while.
//
// Every cluster's files live under BaseDir()/c-ID, with an owner file naming the test process;
// Start first ends what crashed runs left behind (CleanStale) and leaves clusters of live test
// processes alone. Names that other runs could share (network namespaces, links, addresses,
// ports) carry the cluster's random ID or are chosen free.
//
// What building and partitioning the cluster measured, and what lockprobe's runs on it found,
// is in FINDINGS.md beside this file; lockprobe_test.go holds those runs.
package cluster
