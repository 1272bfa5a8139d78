package probe

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
)

// openLockFile opens path read-write for locking. The folder is the one the locker's command
// line allows (it may be reached through links: that path is the user's own); the name in it
// is opened without following a symbolic link, so that a link named like an allowed file
// cannot lead a locker to lock (or, as root, create) a file elsewhere, and it must turn out to
// be a regular file: not a FIFO, a device or a folder. O_NONBLOCK keeps the open of a FIFO
// from waiting for a writer; it is cleared again once the file is known to be regular. With
// derived (a name made by adding a suffix to an allowed one), a file with more than one link is
// refused as well: a hard link is another way to reach a file elsewhere.
func openLockFile(path string, create, derived bool) (int, host.FileID, error) {
	dir, name := filepath.Split(path)
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, host.FileID{}, fmt.Errorf("open %s: folder %s: %w", path, dir, err)
	}
	defer unix.Close(dfd)
	flags := unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK
	if create {
		flags |= unix.O_CREAT
	}
	fd, err := unix.Openat(dfd, name, flags, 0o644)
	if errors.Is(err, unix.ELOOP) {
		return -1, host.FileID{}, fmt.Errorf("open %s: is a symbolic link: lockers do not follow links", path)
	}
	if err != nil {
		return -1, host.FileID{}, fmt.Errorf("open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, host.FileID{}, fmt.Errorf("open %s: fstat: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, host.FileID{}, fmt.Errorf("open %s: not a regular file", path)
	}
	if derived && st.Nlink > 1 {
		unix.Close(fd)
		return -1, host.FileID{}, fmt.Errorf("open %s: has %d hard links: lockers lock files of one name only", path, st.Nlink)
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	id, err := host.StatFD(fd)
	if err != nil {
		unix.Close(fd)
		return -1, host.FileID{}, err
	}
	return fd, id, nil
}
