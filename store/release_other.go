//go:build !linux

package store

// dropPages does nothing where vmsauth is not deployed; development machines
// have memory to spare.
func dropPages(addr, size uintptr) error { return nil }
