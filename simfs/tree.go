package simfs

import (
	"path"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"
)

// rootIno is the FUSE root's node id. Node ids are inode numbers, the same on every mount: one
// file is one lock resource whichever node asks.
const rootIno = 1

// inode is a file or directory of the shared tree.
type inode struct {
	ino      uint64
	mode     uint32 // with the S_IF type bits
	uid, gid uint32
	data     []byte
	children map[string]uint64 // directories only
	parent   uint64
	name     string
	nlink    uint32
	opens    int
	atime    time.Time
	mtime    time.Time
	ctime    time.Time
}

func (n *inode) isDir() bool { return n.mode&syscall.S_IFMT == syscall.S_IFDIR }

// tree is the one file tree all nodes serve, held in memory.
type tree struct {
	mu    sync.Mutex
	nodes map[uint64]*inode
	next  uint64
}

func newTree(uid, gid uint32) *tree {
	now := time.Now()
	t := &tree{nodes: map[uint64]*inode{}, next: rootIno + 1}
	t.nodes[rootIno] = &inode{ino: rootIno, mode: syscall.S_IFDIR | 0o755, uid: uid, gid: gid,
		children: map[string]uint64{}, parent: rootIno, nlink: 2, atime: now, mtime: now, ctime: now}
	return t
}

// lookup returns the child name of dir.
func (t *tree) lookup(dir uint64, name string) (*inode, syscall.Errno) {
	d := t.nodes[dir]
	if d == nil {
		return nil, syscall.ENOENT
	}
	if !d.isDir() {
		return nil, syscall.ENOTDIR
	}
	ino, ok := d.children[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	return t.nodes[ino], 0
}

// create makes name in dir with mode (type bits included).
func (t *tree) create(dir uint64, name string, mode, uid, gid uint32) (*inode, syscall.Errno) {
	d := t.nodes[dir]
	if d == nil {
		return nil, syscall.ENOENT
	}
	if !d.isDir() {
		return nil, syscall.ENOTDIR
	}
	if _, ok := d.children[name]; ok {
		return nil, syscall.EEXIST
	}
	if len(name) > 255 {
		return nil, syscall.ENAMETOOLONG
	}
	now := time.Now()
	n := &inode{ino: t.next, mode: mode, uid: uid, gid: gid, parent: dir, name: name, nlink: 1, atime: now, mtime: now, ctime: now}
	t.next++
	if n.isDir() {
		n.children, n.nlink = map[string]uint64{}, 2
		d.nlink++
	}
	d.children[name] = n.ino
	d.mtime, d.ctime = now, now
	t.nodes[n.ino] = n
	return n, 0
}

// remove unlinks name from dir (a directory only when dir is true, and only when empty).
func (t *tree) remove(dir uint64, name string, wantDir bool) syscall.Errno {
	n, errno := t.lookup(dir, name)
	if errno != 0 {
		return errno
	}
	switch {
	case wantDir && !n.isDir():
		return syscall.ENOTDIR
	case !wantDir && n.isDir():
		return syscall.EISDIR
	case wantDir && len(n.children) > 0:
		return syscall.ENOTEMPTY
	}
	d := t.nodes[dir]
	delete(d.children, name)
	d.mtime, d.ctime = time.Now(), time.Now()
	if n.isDir() {
		d.nlink--
	}
	n.nlink = 0
	t.forget(n)
	return 0
}

// forget drops an unlinked inode that nobody has open. Its number is never used again.
func (t *tree) forget(n *inode) {
	if n.nlink == 0 && n.opens == 0 {
		delete(t.nodes, n.ino)
	}
}

// rename moves name of dir to newName of newDir, replacing a file there.
func (t *tree) rename(dir uint64, name string, newDir uint64, newName string) syscall.Errno {
	n, errno := t.lookup(dir, name)
	if errno != 0 {
		return errno
	}
	nd := t.nodes[newDir]
	if nd == nil || !nd.isDir() {
		return syscall.ENOTDIR
	}
	if old, errno := t.lookup(newDir, newName); errno == 0 {
		if old.isDir() {
			return syscall.EISDIR
		}
		old.nlink = 0
		t.forget(old)
	}
	delete(t.nodes[dir].children, name)
	nd.children[newName] = n.ino
	n.parent, n.name = newDir, newName
	n.ctime = time.Now()
	return 0
}

// pathOf is the file's path inside the tree, for the dump.
func (t *tree) pathOf(ino uint64) string {
	var parts []string
	for n := t.nodes[ino]; n != nil && n.ino != rootIno && len(parts) < 256; n = t.nodes[n.parent] {
		parts = append(parts, n.name)
	}
	slices.Reverse(parts)
	return path.Join(append([]string{"/"}, parts...)...)
}

// names returns dir's entries, sorted, for readdir.
func (t *tree) names(d *inode) []string {
	out := make([]string, 0, len(d.children))
	for name := range d.children {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
