package lptest

// Python programs the tracers' tests run under each tracer (python3 -c PROGRAM FILE).
const (
	// EveryLockCall takes every kind of lock on FILE — F_SETLKW write [0,1) and its unlock, a
	// flock shared try, in a fork an F_OFD_SETLK read [4,6) (the child exits 3) — and closes it.
	EveryLockCall = `
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
pid = os.fork()
if pid == 0:
    fcntl.fcntl(fd, 37, struct.pack("hhxxxxqqixxxx", fcntl.F_RDLCK, 0, 4, 2, 0))
    os._exit(3)
os.waitpid(pid, 0)
os.close(fd)
`
	// WaitForLock waits in F_SETLKW for a write lock on all of FILE.
	WaitForLock = "import fcntl,sys; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX)"
)
