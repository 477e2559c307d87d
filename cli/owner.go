package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The installed service runs as its own user and owns its data directory.
// Root may still run any command on that directory (sudo vmsauth user add
// ...): with the service running the command goes over the control socket
// and root writes nothing; with the service stopped, root opens the files
// itself, and a file it creates there (a new database, a restored one,
// the initial admin password, a self-signed key, a backup written into the
// directory) would be root's and 0600, which the service could not open at
// its next start. So a command run as root gives the files it left in a
// data directory owned by someone else to that directory's owner, the way
// an installer expects files in a service's directory to belong to the
// service.

// giveToDirOwner gives dir's root-owned regular files to dir's owner when
// this process is root and dir belongs to another user; otherwise it does
// nothing. Only the directory's own entries are looked at (vmsauth keeps
// no subdirectories), and each is opened without following a link and
// checked again on the open file, so a link or a second hard link put in
// the directory by its owner cannot make root give away a file elsewhere.
func giveToDirOwner(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := giveFile(filepath.Join(dir, e.Name()), int(st.Uid), int(st.Gid)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("giving new files in %s to its owner (uid %d): %w", dir, st.Uid, err)
	}
	return nil
}

func giveFile(path string, uid, gid int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) {
		return nil // gone, or replaced by a link: nothing of ours to give
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Nlink != 1 {
		return nil
	}
	return unix.Fchown(fd, uid, gid)
}
