package simfs

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// nodeFS serves the shared tree through one mount: one client node. It works at go-fuse's raw
// level because locks need what the node API hides: the lock owner of a flush (closing any
// descriptor ends a process's posix locks) and of a release (the last close ends a flock lock).
type nodeFS struct {
	fuse.RawFileSystem
	fs   *FS
	node int

	mu      sync.Mutex
	handles map[uint64]*handle
	nextFh  uint64
}

// handle is one open file of this node.
type handle struct {
	ino   uint64
	epoch int // the node's eviction count when it was opened
}

func newNodeFS(fs *FS, node int) *nodeFS {
	return &nodeFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), fs: fs, node: node, handles: map[uint64]*handle{}, nextFh: 1}
}

func (n *nodeFS) String() string { return "simfs" }

// lock locks the shared tree and returns it with inode ino (nil when there is none); the caller
// unlocks.
func (n *nodeFS) lock(ino uint64) (*tree, *inode) {
	t := n.fs.tree
	t.mu.Lock()
	return t, t.nodes[ino]
}

func status(errno syscall.Errno) fuse.Status { return fuse.Status(errno) }

// fill describes an inode to the kernel with no caching: another node may change it any time.
func fill(in *inode, out *fuse.Attr) {
	*out = fuse.Attr{Ino: in.ino, Size: uint64(len(in.data)), Blocks: (uint64(len(in.data)) + 511) / 512,
		Mode: in.mode, Nlink: in.nlink, Owner: fuse.Owner{Uid: in.uid, Gid: in.gid}, Blksize: 4096}
	out.SetTimes(&in.atime, &in.mtime, &in.ctime)
}

func entry(in *inode, out *fuse.EntryOut) {
	*out = fuse.EntryOut{NodeId: in.ino, Generation: 1}
	fill(in, &out.Attr)
}

func (n *nodeFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	t := n.fs.tree
	t.mu.Lock()
	defer t.mu.Unlock()
	in, errno := t.lookup(h.NodeId, name)
	if errno != 0 {
		return status(errno)
	}
	entry(in, out)
	return fuse.OK
}

func (n *nodeFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	t, node := n.lock(in.NodeId)
	defer t.mu.Unlock()
	if node == nil {
		return fuse.ENOENT
	}
	fill(node, &out.Attr)
	return fuse.OK
}

func (n *nodeFS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	t, node := n.lock(in.NodeId)
	defer t.mu.Unlock()
	if node == nil {
		return fuse.ENOENT
	}
	now := time.Now()
	if in.Valid&fuse.FATTR_MODE != 0 {
		node.mode = node.mode&syscall.S_IFMT | in.Mode&^syscall.S_IFMT
	}
	if in.Valid&fuse.FATTR_UID != 0 {
		node.uid = in.Uid
	}
	if in.Valid&fuse.FATTR_GID != 0 {
		node.gid = in.Gid
	}
	if in.Valid&fuse.FATTR_SIZE != 0 {
		if node.isDir() {
			return fuse.Status(syscall.EISDIR)
		}
		node.data = resize(node.data, int(in.Size))
		node.mtime = now
	}
	if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
		node.atime = now
	} else if in.Valid&fuse.FATTR_ATIME != 0 {
		node.atime = time.Unix(int64(in.Atime), int64(in.Atimensec))
	}
	if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		node.mtime = now
	} else if in.Valid&fuse.FATTR_MTIME != 0 {
		node.mtime = time.Unix(int64(in.Mtime), int64(in.Mtimensec))
	}
	node.ctime = now
	fill(node, &out.Attr)
	return fuse.OK
}

func resize(b []byte, size int) []byte {
	if size <= len(b) {
		return b[:size]
	}
	return append(b, make([]byte, size-len(b))...)
}

func (n *nodeFS) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fuse.EPERM
	}
	return n.make(&in.InHeader, name, in.Mode&^in.Umask, out)
}

func (n *nodeFS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return n.make(&in.InHeader, name, syscall.S_IFDIR|(in.Mode&^in.Umask&0o7777), out)
}

func (n *nodeFS) make(h *fuse.InHeader, name string, mode uint32, out *fuse.EntryOut) fuse.Status {
	t := n.fs.tree
	t.mu.Lock()
	defer t.mu.Unlock()
	in, errno := t.create(h.NodeId, name, mode, h.Uid, h.Gid)
	if errno != 0 {
		return status(errno)
	}
	entry(in, out)
	return fuse.OK
}

func (n *nodeFS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	t := n.fs.tree
	t.mu.Lock()
	defer t.mu.Unlock()
	return status(t.remove(h.NodeId, name, false))
}

func (n *nodeFS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	t := n.fs.tree
	t.mu.Lock()
	defer t.mu.Unlock()
	return status(t.remove(h.NodeId, name, true))
}

func (n *nodeFS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if in.Flags != 0 {
		return fuse.EINVAL
	}
	t := n.fs.tree
	t.mu.Lock()
	defer t.mu.Unlock()
	return status(t.rename(in.NodeId, oldName, in.Newdir, newName))
}

func (n *nodeFS) Access(<-chan struct{}, *fuse.AccessIn) fuse.Status { return fuse.OK }

func (n *nodeFS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	t := n.fs.tree
	t.mu.Lock()
	defer t.mu.Unlock()
	node, errno := t.create(in.NodeId, name, syscall.S_IFREG|(in.Mode&^in.Umask&0o7777), in.Uid, in.Gid)
	if errno != 0 {
		return status(errno)
	}
	entry(node, &out.EntryOut)
	out.OpenOut = n.open(node)
	return fuse.OK
}

// open records a handle (the tree is locked). Direct I/O: each node's page cache would
// otherwise keep its own copy of the data.
func (n *nodeFS) open(node *inode) fuse.OpenOut {
	node.opens++
	epoch := n.fs.mgr.Epoch(n.node)
	n.mu.Lock()
	defer n.mu.Unlock()
	fh := n.nextFh
	n.nextFh++
	n.handles[fh] = &handle{ino: node.ino, epoch: epoch}
	return fuse.OpenOut{Fh: fh, OpenFlags: fuse.FOPEN_DIRECT_IO}
}

func (n *nodeFS) handle(fh uint64) *handle {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.handles[fh]
}

func (n *nodeFS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	t, node := n.lock(in.NodeId)
	defer t.mu.Unlock()
	if node == nil {
		return fuse.ENOENT
	}
	if node.isDir() {
		return fuse.Status(syscall.EISDIR)
	}
	if in.Flags&syscall.O_TRUNC != 0 {
		node.data = node.data[:0]
		node.mtime = time.Now()
	}
	*out = n.open(node)
	return fuse.OK
}

func (n *nodeFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	t, node := n.lock(in.NodeId)
	defer t.mu.Unlock()
	if node == nil {
		return nil, fuse.ENOENT
	}
	if in.Offset >= uint64(len(node.data)) {
		return fuse.ReadResultData(nil), fuse.OK
	}
	k := copy(buf, node.data[in.Offset:])
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

// maxFileSize bounds a file of the in-memory tree.
const maxFileSize = 1 << 30

func (n *nodeFS) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	t, node := n.lock(in.NodeId)
	defer t.mu.Unlock()
	if node == nil {
		return 0, fuse.ENOENT
	}
	end := in.Offset + uint64(len(data))
	if end > maxFileSize {
		return 0, fuse.Status(syscall.EFBIG)
	}
	if end > uint64(len(node.data)) {
		node.data = resize(node.data, int(end))
	}
	copy(node.data[in.Offset:], data)
	node.mtime = time.Now()
	return uint32(len(data)), fuse.OK
}

func (n *nodeFS) Fsync(<-chan struct{}, *fuse.FsyncIn) fuse.Status { return fuse.OK }

// Flush comes with every close of a descriptor: the owner's posix locks on the file end.
func (n *nodeFS) Flush(_ <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if n.fs.opts.Mode == ModeFlock {
		n.fs.mgr.Flush(n.node, in.NodeId, in.LockOwner)
	}
	return fuse.OK
}

// Release comes with the last close of an open file.
func (n *nodeFS) Release(_ <-chan struct{}, in *fuse.ReleaseIn) {
	n.mu.Lock()
	h := n.handles[in.Fh]
	delete(n.handles, in.Fh)
	n.mu.Unlock()
	if h == nil {
		return
	}
	if n.fs.opts.Mode == ModeFlock {
		n.fs.mgr.Release(n.node, h.ino, in.Fh, in.ReleaseFlags&fuse.FUSE_RELEASE_FLOCK_UNLOCK != 0, in.LockOwner)
	}
	t := n.fs.tree
	t.mu.Lock()
	defer t.mu.Unlock()
	if node := t.nodes[h.ino]; node != nil {
		node.opens--
		t.forget(node)
	}
}

func (n *nodeFS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	t, node := n.lock(in.NodeId)
	defer t.mu.Unlock()
	if node == nil {
		return fuse.ENOENT
	}
	if !node.isDir() {
		return fuse.ENOTDIR
	}
	return fuse.OK
}

func (n *nodeFS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	t, d := n.lock(in.NodeId)
	defer t.mu.Unlock()
	if d == nil || !d.isDir() {
		return fuse.ENOTDIR
	}
	list := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR, Ino: d.ino}, {Name: "..", Mode: syscall.S_IFDIR, Ino: d.parent}}
	for _, name := range t.names(d) {
		c := t.nodes[d.children[name]]
		list = append(list, fuse.DirEntry{Name: name, Mode: c.mode, Ino: c.ino})
	}
	for i := in.Offset; i < uint64(len(list)); i++ {
		if !out.AddDirEntry(list[i]) {
			break
		}
	}
	return fuse.OK
}

func (n *nodeFS) ReleaseDir(*fuse.ReleaseIn) {}

func (n *nodeFS) StatFs(_ <-chan struct{}, _ *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	*out = fuse.StatfsOut{Blocks: 1 << 20, Bfree: 1 << 19, Bavail: 1 << 19, Files: 1 << 20, Ffree: 1 << 19, Bsize: 4096, NameLen: 255, Frsize: 4096}
	return fuse.OK
}

// request turns a FUSE lock call into the manager's request; errno is EIO for a file the node
// opened before it was evicted.
func (n *nodeFS) request(in *fuse.LkIn) (Request, syscall.Errno) {
	if n.fs.opts.Mode == ModeNoflock {
		return Request{}, syscall.ENOSYS
	}
	h := n.handle(in.Fh)
	if h == nil {
		return Request{}, syscall.EBADF
	}
	if n.fs.mgr.Stale(n.node, h.epoch) {
		return Request{}, syscall.EIO
	}
	n.fs.tree.mu.Lock()
	path := n.fs.tree.pathOf(in.NodeId)
	n.fs.tree.mu.Unlock()
	r := Request{Node: n.node, Ino: in.NodeId, Path: path, Fh: in.Fh, Owner: in.Owner, Flock: in.LkFlags&fuse.FUSE_LK_FLOCK != 0,
		PID: in.Lk.Pid, Type: in.Lk.Typ, Start: in.Lk.Start, End: in.Lk.End}
	if r.End < r.Start {
		return r, syscall.EINVAL
	}
	return r, 0
}

func (n *nodeFS) GetLk(_ <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	r, errno := n.request(in)
	if errno != 0 {
		return status(errno)
	}
	held, ok := n.fs.mgr.Test(r)
	if !ok {
		out.Lk = fuse.FileLock{Typ: syscall.F_UNLCK}
		return fuse.OK
	}
	out.Lk = fuse.FileLock{Start: held.Start, End: held.End, Typ: held.Type, Pid: viewPID(held.PID, in.Caller.Pid)}
	return fuse.OK
}

func (n *nodeFS) SetLk(_ <-chan struct{}, in *fuse.LkIn) fuse.Status {
	r, errno := n.request(in)
	if errno != 0 {
		return status(errno)
	}
	return status(n.fs.mgr.Lock(context.Background(), r, false))
}

// SetLkw waits for the grant's completion; the kernel's interrupt (a signal to the caller)
// cancels the request.
func (n *nodeFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	r, errno := n.request(in)
	if errno != 0 {
		return status(errno)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		select {
		case <-cancel:
			stop()
		case <-ctx.Done():
		}
	}()
	return status(n.fs.mgr.Lock(ctx, r, true))
}
