// Package atomicfile writes a file so that it holds either its old content
// or the whole new one, even after a power cut or a SIGKILL half-way: the
// bytes go to a temp file beside it, which is synced, renamed over it, and
// then the directory is synced so that the rename itself is on disk. Every
// file vmsauth writes for later (the TLS key and certificate, the initial
// admin password, the captcha secret, backups, a restored database, the
// systemd unit) goes through it.
//
// It is a leaf: the standard library only, so that install, web and cli
// can all use it without an arrow pointing the wrong way.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write writes data to path with mode perm.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFrom(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, nil)
}

// WriteFrom writes what fill writes to path with mode perm. check, if not
// nil, gets the name of the complete, synced temp file before it is
// renamed into place; an error from it (as from fill) leaves path as it
// was and removes the temp file.
func WriteFrom(path string, perm os.FileMode, fill func(io.Writer) error, check func(tmp string) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600; Chmod sets perm exactly, whatever
	// the umask.
	if err = f.Chmod(perm); err == nil {
		if err = fill(f); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if check != nil {
		if err = check(tmp); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the entries of dir (a rename into it, a new file) last
// through a power cut. A file system that cannot sync a directory
// (os.ErrInvalid) has nothing more to make durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
