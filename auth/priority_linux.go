package auth

import (
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

// schedIdle is Linux's SCHED_IDLE policy, which package syscall lacks.
const schedIdle = 5

// idleThread makes the calling thread, which must be locked to its
// goroutine, give way to every other thread of the box. In SCHED_IDLE the
// kernel runs it only on a core nothing else wants, and a waking token
// check takes the core at once; at a mere nice 10 the check could still
// wait out the rest of the hashing thread's time slice. lift moves the
// thread back to the normal policy at nice 10, so that a hash still gets a
// share of a box kept busy by other work; call it at most once, and only
// while the thread runs (on Linux a thread id names just that thread).
//
// Leaving SCHED_IDLE takes CAP_SYS_NICE. Without it (a service started
// without root, a test) the thread goes to nice 10 only, because a thread
// that could not be lifted could starve.
func idleThread() (lift func()) {
	tid := syscall.Gettid()
	if canLift() && setScheduler(tid, schedIdle) == nil {
		return func() {
			_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, 10)
			_ = setScheduler(tid, 0) // SCHED_OTHER
		}
	}
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, 10)
	return func() {}
}

// canLift reports whether this process may move a thread out of
// SCHED_IDLE, trying it once on a thread of its own.
var canLift = sync.OnceValue(func() bool {
	ok := make(chan bool)
	go func() {
		// Never unlocked: the thread exits with the goroutine, so its
		// changed policy stays with it.
		runtime.LockOSThread()
		tid := syscall.Gettid()
		ok <- setScheduler(tid, schedIdle) == nil && setScheduler(tid, 0) == nil
	}()
	return <-ok
})

func setScheduler(tid, policy int) error {
	var param struct{ priority int32 }
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(tid), uintptr(policy), uintptr(unsafe.Pointer(&param)))
	if errno != 0 {
		return errno
	}
	return nil
}
