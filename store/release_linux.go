package store

import "golang.org/x/sys/unix"

// dropPages drops the page table entries of [addr, addr+size) of the shared
// file map with MADV_DONTNEED: for a shared file map the contents are the
// file's, so the next read sees the same bytes.
func dropPages(addr, size uintptr) error {
	if size == 0 {
		return nil
	}
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, size, unix.MADV_DONTNEED); errno != 0 {
		return errno
	}
	return nil
}
