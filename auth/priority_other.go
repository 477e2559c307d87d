//go:build !linux

package auth

// idleThread does nothing here: outside Linux, setpriority with
// PRIO_PROCESS lowers the whole process, which would slow token checks
// along with bcrypt.
func idleThread() (lift func()) { return func() {} }
