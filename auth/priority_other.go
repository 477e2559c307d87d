//go:build !linux

package auth

// lowerThreadPriority does nothing here: outside Linux, setpriority with
// PRIO_PROCESS lowers the whole process, which would slow token checks along
// with bcrypt.
func lowerThreadPriority() {}
