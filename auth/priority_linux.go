package auth

import "syscall"

// lowerThreadPriority sets the calling thread's nice value to 10. On Linux a
// thread id given as PRIO_PROCESS names that one thread, not the process, so
// the rest of the service keeps its priority. A refusal only costs the
// preference for token checks, so it is ignored.
func lowerThreadPriority() {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 10)
}
