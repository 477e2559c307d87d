// Package procstat is what the benchmark tools (fwdbench, sitebench) read
// of the machine and its processes: CPU time from /proc, the load average,
// and free loopback ports. Linux only, like the tools.
package procstat

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPUTime is the user and system CPU time of pid and its children (an
// nginx master's workers), from /proc; 0 for a process that is gone.
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses: utime
	// and stime are the 14th and 15th of the line, in clock ticks (1/100 s
	// on Linux).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	total := time.Duration(utime+stime) * 10 * time.Millisecond
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, k := range strings.Fields(string(kids)) {
		if kid, err := strconv.Atoi(k); err == nil {
			total += CPUTime(kid)
		}
	}
	return total
}

// Loadavg is the 1, 5 and 15 minute load averages, or "?".
func Loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// FreeAddr returns a loopback address with a port free a moment ago.
func FreeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
