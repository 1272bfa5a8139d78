//go:build !lockeronly

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lockprobe/lockprobe/host"
	"github.com/lockprobe/lockprobe/proto"
	"github.com/lockprobe/lockprobe/scenario"
)

// checkLockFile accepts one regular file for all the lockers: an existing one they can read and
// write, or a new one in an existing folder (created now, as the seed harness's lockers did).
// The folder may be reached through links (the path returned has them resolved); the file
// itself may not be a link, and it may not live on a pseudo file system such as /proc, where
// each process sees a file of its own. The controller may open and close it: it holds no locks.
func checkLockFile(p string) (string, error) {
	switch {
	case p == "":
		return "", usagef("-file \"\": an empty path")
	case strings.ContainsRune(p, 0):
		return "", usagef("-file %q: the path holds a NUL byte", p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", usagef("-file %s: %v", p, err)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", usagef("-file %s: directory %s does not exist", p, filepath.Dir(abs))
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", usagef("-file %s: %s is not a directory", p, filepath.Dir(abs))
	}
	path := filepath.Join(dir, filepath.Base(abs))
	if fs, err := host.FileSystem(dir); err == nil && host.PseudoFS(fs.MagicName) {
		return "", usagef("-file %s: on %s, a pseudo file system: each process may see a file of its own there", p, fs.MagicName)
	}
	st, err := os.Lstat(path)
	switch {
	case err == nil && st.Mode()&os.ModeSymlink != 0:
		target, _ := filepath.EvalSymlinks(path)
		return "", usagef("-file %s: is a symbolic link (to %s): give the file itself; lockers do not follow links", p, target)
	case err == nil && st.IsDir():
		return "", usagef("-file %s: is a directory, not a file", p)
	case err == nil && !st.Mode().IsRegular():
		return "", usagef("-file %s: not a regular file (%s)", p, fileType(st.Mode()))
	case err == nil:
		if err := unix.Access(path, unix.R_OK|unix.W_OK); err != nil {
			return "", usagef("-file %s: cannot read and write it: %v", p, err)
		}
	case errors.Is(err, os.ErrNotExist):
		// O_EXCL: a link made meanwhile is not followed.
		fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return "", usagef("-file %s: cannot create it: %v", p, err)
		}
		fh.Close()
	default:
		return "", usagef("-file %s: %v", p, err)
	}
	return path, nil
}

func fileType(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return m.Type().String()
}

// checkQueueFiles checks, before any process starts, the files the scenario's file@ commands
// name: each must be a -file or a name made from one by a suffix (the lockers refuse anything
// else), and one that exists must be a regular file, not a link.
func checkQueueFiles(queues [][]proto.Command, files []string) error {
	seen := map[string]bool{}
	for _, q := range queues {
		for _, c := range q {
			if c.Op != proto.OpFile || seen[c.Path] {
				continue
			}
			seen[c.Path] = true
			if err := checkQueueFile(c, files); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkQueueFile(c proto.Command, files []string) error {
	where := fmt.Sprintf("scenario line %d: file@%s", c.Line, c.Path)
	abs, err := filepath.Abs(c.Path)
	if err != nil {
		return usagef("%s: %v", where, err)
	}
	allowed := false
	for _, f := range files {
		if rest, ok := strings.CutPrefix(abs, f); ok && !strings.Contains(rest, "/") {
			allowed = true
		}
	}
	if !allowed {
		return usagef("%s: not a -file, nor a name made from one by a suffix: lockers open only those", where)
	}
	st, err := os.Lstat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil // the locker creates it
	case err != nil:
		return usagef("%s: %v", where, err)
	case st.Mode()&os.ModeSymlink != 0:
		return usagef("%s: is a symbolic link: lockers do not follow links", where)
	case !st.Mode().IsRegular():
		return usagef("%s: not a regular file (%s)", where, fileType(st.Mode()))
	}
	return nil
}

// checkOutDir accepts a folder, or a path where one can be made.
func checkOutDir(out string) error {
	if out == "" {
		return usagef("-out \"\": an empty path")
	}
	st, err := os.Stat(out)
	switch {
	case err == nil && !st.IsDir():
		return usagef("-out %s: exists and is not a folder", out)
	case err == nil, errors.Is(err, os.ErrNotExist):
		return nil
	}
	return usagef("-out %s: %v", out, err)
}

// loadScenario loads a built-in or a scenario file as a usage error when it cannot.
func loadScenario(arg string) (*scenario.Scenario, error) {
	sc, err := scenario.Load(arg, scenario.ParseOptions{})
	if err != nil {
		return nil, usagef("%v", err)
	}
	return sc, nil
}
