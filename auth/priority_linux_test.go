package auth

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadSched returns the calling thread's policy and nice value.
func threadSched(t *testing.T) (policy, nice int) {
	t.Helper()
	p, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETSCHEDULER, 0, 0, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	// The raw getpriority answers 20 - nice.
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	return int(p), 20 - prio
}

// TestLowPriority checks the hashing thread's policy before and after its
// lift. It waits for events, not for a time: a SCHED_IDLE thread on a
// loaded machine may not run at all for longer than any lift delay, so the
// first look uses a lift that never comes within the test, and the second
// waits (up to a generous bound) for the lift to happen.
func TestLowPriority(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	callerPolicy, callerNice := threadSched(t)

	var first [2]int
	(&hasher{lift: time.Hour}).lowPriority(func() {
		first[0], first[1] = threadSched(t)
	})
	if canLift() {
		if first != [2]int{schedIdle, 0} {
			t.Errorf("hashing thread starts at policy %d nice %d, want SCHED_IDLE", first[0], first[1])
		}
	} else {
		t.Logf("no CAP_SYS_NICE: hashing runs at nice 10 from the start")
		if first != [2]int{0, 10} {
			t.Errorf("hashing thread starts at policy %d nice %d, want nice 10", first[0], first[1])
		}
	}

	var lifted [2]int
	(&hasher{lift: time.Millisecond}).lowPriority(func() {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if lifted[0], lifted[1] = threadSched(t); lifted == [2]int{0, 10} {
				return
			}
		}
	})
	if lifted != [2]int{0, 10} {
		t.Errorf("the lift never came: hashing runs at policy %d nice %d, want SCHED_OTHER at nice 10", lifted[0], lifted[1])
	}
	if p, n := threadSched(t); p != callerPolicy || n != callerNice {
		t.Errorf("the caller's thread changed to policy %d nice %d", p, n)
	}
}
