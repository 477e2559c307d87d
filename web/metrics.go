package web

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

// The metrics are written by VictoriaMetrics' client: the same Prometheus
// text format as the official client without linking protobuf, which made
// the binary 2.3 MB larger, and the binary is resident memory on the box.
// Its own metadata (ExposeMetadata) stays off: it is one switch for the
// whole process, writes every # HELP empty, types the process_io_*_total
// counters as gauges, and three of its Go runtime names break Prometheus'
// naming rules. The handler writes # HELP and # TYPE itself, from the
// families table below.

// metrics are vmsauth's Prometheus metrics, in a set of their own so that
// each handler (and each test) counts alone.
type metrics struct {
	set   *vm.Set
	allow []*net.IPNet

	// Counters are found by their labels under a read lock: the set's own
	// GetOrCreate takes a mutex and builds the name on every request.
	mu       sync.RWMutex
	counters map[counterKey]*vm.Counter
	routes   map[routeKey]*vm.PrometheusHistogram
}

// counterKey names a counter: its family and its label values, in the
// order counterLabels gives their names.
type counterKey struct {
	family string
	values [3]string
}

var counterLabels = map[string][]string{
	"vmsauth_logins_total":        {"api", "result"},
	"vmsauth_throttled_total":     {"api"},
	"vmsauth_captchas_total":      {"event"},
	"vmsauth_http_requests_total": {"method", "route", "code"},
}

type routeKey struct{ method, route string }

// liveSessionsEvery bounds how often the session count is recomputed: it
// walks every session, which a scrape every few seconds should not repeat.
const liveSessionsEvery = 30 * time.Second

// latencyBuckets are the upper bounds, in seconds, of the request latency
// histogram: a Prometheus histogram rather than a summary (or the client's
// own vmrange histogram), so that the buckets of many boxes add up. Token
// checks answer in well under a millisecond and bcrypt logins in 50 to 500 ms
// (more on a slow ARM box or behind a queue of logins); the buckets part
// both ranges finely and leave the rest coarse, to keep the series few.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

func newMetrics(live func() (map[auth.API]int, error), allow []*net.IPNet) *metrics {
	m := &metrics{
		set:      vm.NewSet(),
		allow:    allow,
		counters: map[counterKey]*vm.Counter{},
		routes:   map[routeKey]*vm.PrometheusHistogram{},
	}
	// Counters a dashboard plots exist from the start, at zero.
	for _, api := range auth.AllAPIs {
		for _, result := range []string{"ok", "failed"} {
			m.login(api, result, 0)
		}
		m.throttle(api, 0)
	}
	for _, event := range []string{"issued", "solved", "failed"} {
		m.captcha(event, 0)
	}
	if live != nil {
		l := &liveSessions{count: live}
		for _, api := range auth.AllAPIs {
			m.set.NewGauge(`vmsauth_live_sessions{api="`+string(api)+`"}`, func() float64 { return float64(l.get()[api]) })
		}
	}
	return m
}

// login counts a password login attempt; result is "ok" or "failed".
func (m *metrics) login(api auth.API, result string, n int) {
	m.counter(counterKey{"vmsauth_logins_total", [3]string{string(api), result}}, n)
}

// throttle counts a request refused with 429 (captchas count as client).
func (m *metrics) throttle(api auth.API, n int) {
	m.counter(counterKey{"vmsauth_throttled_total", [3]string{string(api)}}, n)
}

// captcha counts captchas issued, solved and failed.
func (m *metrics) captcha(event string, n int) {
	m.counter(counterKey{"vmsauth_captchas_total", [3]string{event}}, n)
}

// counter adds n to the counter k, making it on first use. Every caller
// passes label values from a fixed set, so the number of counters is
// bounded.
func (m *metrics) counter(k counterKey, n int) {
	m.mu.RLock()
	ctr := m.counters[k]
	m.mu.RUnlock()
	if ctr == nil {
		name := k.family + `{`
		for i, label := range counterLabels[k.family] {
			if i > 0 {
				name += `,`
			}
			name += label + `="` + k.values[i] + `"`
		}
		m.mu.Lock()
		if ctr = m.counters[k]; ctr == nil {
			ctr = m.set.NewCounter(name + `}`)
			m.counters[k] = ctr
		}
		m.mu.Unlock()
	}
	ctr.Add(n)
}

// observe records every request under its route pattern, never its raw
// path or an unknown method: either would let a client grow the label set
// without bound.
func (m *metrics) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route, method := c.FullPath(), c.Request.Method
	if route == "" {
		route, method = "unmatched", knownMethod(method)
	}
	m.request(method, route, c.Writer.Status(), time.Since(start))
}

func (m *metrics) request(method, route string, code int, took time.Duration) {
	m.counter(counterKey{"vmsauth_http_requests_total", [3]string{method, route, statusLabel(code)}}, 1)
	k := routeKey{method, route}
	m.mu.RLock()
	h := m.routes[k]
	m.mu.RUnlock()
	if h == nil {
		m.mu.Lock()
		if h = m.routes[k]; h == nil {
			h = m.set.NewPrometheusHistogramExt(`vmsauth_http_request_duration_seconds{method="`+method+`",route="`+route+`"}`,
				latencyBuckets)
			m.routes[k] = h
		}
		m.mu.Unlock()
	}
	h.Update(took.Seconds())
}

// statusLabels are the codes' label values, made once: strconv.Itoa
// allocates for every code above 99, on every request.
var statusLabels = func() (l [600]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func statusLabel(code int) string {
	if code >= 0 && code < len(statusLabels) {
		return statusLabels[code]
	}
	return strconv.Itoa(code)
}

func knownMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

// handler serves /metrics to loopback and the allowed networks only: the
// numbers tell an attacker how the box is doing. It judges the client's
// address as resolved through --trusted-proxies: behind a local TLS proxy
// every TCP peer is loopback.
func (m *metrics) handler() gin.HandlerFunc {
	return func(c *gin.Context) {
		ip := net.ParseIP(c.ClientIP())
		ok := ip != nil && ip.IsLoopback()
		for _, n := range m.allow {
			ok = ok || (ip != nil && n.Contains(ip))
		}
		if !ok {
			message(c, http.StatusForbidden, "forbidden")
			return
		}
		var page bytes.Buffer
		m.set.WritePrometheus(&page)
		vm.WriteProcessMetrics(&page)
		c.Header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		c.Status(http.StatusOK)
		c.Writer.Write(annotate(page.Bytes()))
	}
}

// annotate puts # HELP and # TYPE before each family of the page the client
// wrote (which keeps each family's lines together), and renames the series
// in renamed. A family missing from the table is left untyped; the tests
// fail on it, so a new client version cannot add one unnoticed.
func annotate(page []byte) []byte {
	out := make([]byte, 0, len(page)+len(page)/2)
	last := ""
	for len(page) > 0 {
		line := page
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line = page[:i+1]
		}
		page = page[len(line):]
		end := bytes.IndexAny(line, "{ ")
		if line[0] == '#' || end < 0 {
			out = append(out, line...)
			continue
		}
		name, rest := string(line[:end]), line[end:]
		if to, ok := renamed[name]; ok {
			name = to
		}
		if fam := familyOf(name); fam != last {
			last = fam
			if f, ok := families[fam]; ok {
				out = append(out, "# HELP "+fam+" "+f.help+"\n# TYPE "+fam+" "+f.typ+"\n"...)
			}
		}
		out = append(append(out, name...), rest...)
	}
	return out
}

// familyOf names the family of a series: itself, or the histogram or
// summary whose _bucket, _sum or _count it is.
func familyOf(name string) string {
	if _, ok := families[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f := families[base]; f.typ == "histogram" || f.typ == "summary" && suffix != "_bucket" {
				return base
			}
		}
	}
	return name
}

// family is what Prometheus is told of a metric family.
type family struct{ typ, help string }

// renamed are the client's series whose names Prometheus' rules reject: a
// counter ends in _total, and only histograms and summaries end in _count.
var renamed = map[string]string{
	"go_cgo_calls_count": "go_cgo_calls_total",
	"go_gc_forced_count": "go_gc_forced_total",
	"go_cpu_count":       "go_cpus",
}

// families are every family on /metrics: vmsauth's own, then those that
// VictoriaMetrics' WriteProcessMetrics writes on Linux (v1.45.0: some only
// where the kernel offers them, such as pressure and cgroup figures).
var families = map[string]family{
	"vmsauth_logins_total":                  {"counter", "Password login attempts, by API and result (ok or failed)."},
	"vmsauth_throttled_total":               {"counter", "Requests refused with 429 by the login throttle, by API."},
	"vmsauth_captchas_total":                {"counter", "Captchas issued, solved and failed."},
	"vmsauth_live_sessions":                 {"gauge", "Sessions not yet expired, by API (recounted at most every 30 s)."},
	"vmsauth_http_requests_total":           {"counter", "HTTP requests answered, by method, route pattern and status code."},
	"vmsauth_http_request_duration_seconds": {"histogram", "Time to answer an HTTP request, by method and route pattern."},

	"go_memstats_alloc_bytes":             {"gauge", "Bytes of allocated heap objects."},
	"go_memstats_alloc_bytes_total":       {"counter", "Bytes allocated for heap objects, freed or not."},
	"go_memstats_buck_hash_sys_bytes":     {"gauge", "Bytes of memory in profiling bucket hash tables."},
	"go_memstats_frees_total":             {"counter", "Heap objects freed."},
	"go_memstats_gc_cpu_fraction":         {"gauge", "Fraction of the CPU time available since the start used by the garbage collector."},
	"go_memstats_gc_sys_bytes":            {"gauge", "Bytes of memory in garbage collection metadata."},
	"go_memstats_heap_alloc_bytes":        {"gauge", "Bytes of allocated heap objects."},
	"go_memstats_heap_idle_bytes":         {"gauge", "Bytes in idle (unused) heap spans."},
	"go_memstats_heap_inuse_bytes":        {"gauge", "Bytes in in-use heap spans."},
	"go_memstats_heap_objects":            {"gauge", "Allocated heap objects."},
	"go_memstats_heap_released_bytes":     {"gauge", "Bytes of heap memory returned to the OS."},
	"go_memstats_heap_sys_bytes":          {"gauge", "Bytes of heap memory obtained from the OS."},
	"go_memstats_last_gc_time_seconds":    {"gauge", "Time the last garbage collection finished, in seconds since the Unix epoch."},
	"go_memstats_lookups_total":           {"counter", "Pointer lookups performed by the runtime."},
	"go_memstats_mallocs_total":           {"counter", "Heap objects allocated."},
	"go_memstats_mcache_inuse_bytes":      {"gauge", "Bytes of allocated mcache structures."},
	"go_memstats_mcache_sys_bytes":        {"gauge", "Bytes of memory obtained from the OS for mcache structures."},
	"go_memstats_mspan_inuse_bytes":       {"gauge", "Bytes of allocated mspan structures."},
	"go_memstats_mspan_sys_bytes":         {"gauge", "Bytes of memory obtained from the OS for mspan structures."},
	"go_memstats_next_gc_bytes":           {"gauge", "Heap size at which the next garbage collection starts."},
	"go_memstats_other_sys_bytes":         {"gauge", "Bytes of memory in miscellaneous off-heap runtime allocations."},
	"go_memstats_stack_inuse_bytes":       {"gauge", "Bytes in stack spans."},
	"go_memstats_stack_sys_bytes":         {"gauge", "Bytes of stack memory obtained from the OS."},
	"go_memstats_sys_bytes":               {"gauge", "Bytes of memory obtained from the OS."},
	"go_cgo_calls_total":                  {"counter", "Calls from Go to C."},
	"go_cpus":                             {"gauge", "Logical CPUs usable by the process."},
	"go_gc_duration_seconds":              {"summary", "Pause times of garbage collections."},
	"go_gc_forced_total":                  {"counter", "Garbage collections forced by the program."},
	"go_gomaxprocs":                       {"gauge", "GOMAXPROCS: the most threads running Go code at once."},
	"go_goroutines":                       {"gauge", "Goroutines that exist."},
	"go_threads":                          {"gauge", "OS threads created."},
	"go_info":                             {"gauge", "Go version the binary was built with."},
	"go_info_ext":                         {"gauge", "Compiler, architecture and OS the binary was built for."},
	"go_sched_latencies_seconds":          {"histogram", "Time goroutines spent runnable before running (no _sum: the runtime does not keep it)."},
	"go_mutex_wait_seconds_total":         {"counter", "Time goroutines spent blocked on a sync.Mutex or sync.RWMutex."},
	"go_gc_mark_assist_cpu_seconds_total": {"counter", "CPU time goroutines spent helping the garbage collector."},
	"go_gc_cpu_seconds_total":             {"counter", "CPU time spent on garbage collection."},
	"go_gc_pauses_seconds":                {"histogram", "Stop-the-world pauses of garbage collections (no _sum: the runtime does not keep it)."},
	"go_scavenge_cpu_seconds_total":       {"counter", "CPU time spent returning memory to the OS."},
	"go_memlimit_bytes":                   {"gauge", "Go runtime memory limit (GOMEMLIMIT)."},

	"process_cpu_seconds_system_total":              {"counter", "CPU time spent in the kernel."},
	"process_cpu_seconds_total":                     {"counter", "CPU time spent, user and kernel."},
	"process_cpu_seconds_user_total":                {"counter", "CPU time spent in user space."},
	"process_major_pagefaults_total":                {"counter", "Page faults that read from disk."},
	"process_minor_pagefaults_total":                {"counter", "Page faults served without reading from disk."},
	"process_num_threads":                           {"gauge", "OS threads of the process."},
	"process_resident_memory_bytes":                 {"gauge", "Resident memory (VmRSS)."},
	"process_start_time_seconds":                    {"gauge", "Start time of the process, in seconds since the Unix epoch."},
	"process_virtual_memory_bytes":                  {"gauge", "Virtual memory size."},
	"process_virtual_memory_peak_bytes":             {"gauge", "Peak virtual memory size (VmPeak)."},
	"process_resident_memory_peak_bytes":            {"gauge", "Peak resident memory (VmHWM)."},
	"process_resident_memory_anon_bytes":            {"gauge", "Resident anonymous memory: heap and stacks (RssAnon)."},
	"process_resident_memory_file_bytes":            {"gauge", "Resident file-backed memory: the binary and mapped files (RssFile)."},
	"process_resident_memory_shared_bytes":          {"gauge", "Resident shared memory (RssShmem)."},
	"process_io_read_bytes_total":                   {"counter", "Bytes read by read-like system calls."},
	"process_io_written_bytes_total":                {"counter", "Bytes written by write-like system calls."},
	"process_io_read_syscalls_total":                {"counter", "Read-like system calls."},
	"process_io_write_syscalls_total":               {"counter", "Write-like system calls."},
	"process_io_storage_read_bytes_total":           {"counter", "Bytes read from storage."},
	"process_io_storage_written_bytes_total":        {"counter", "Bytes written to storage."},
	"process_pressure_cpu_waiting_seconds_total":    {"counter", "Time some tasks waited for CPU since the start (PSI)."},
	"process_pressure_cpu_stalled_seconds_total":    {"counter", "Time all tasks waited for CPU since the start (PSI)."},
	"process_pressure_io_waiting_seconds_total":     {"counter", "Time some tasks waited for I/O since the start (PSI)."},
	"process_pressure_io_stalled_seconds_total":     {"counter", "Time all tasks waited for I/O since the start (PSI)."},
	"process_pressure_memory_waiting_seconds_total": {"counter", "Time some tasks waited for memory since the start (PSI)."},
	"process_pressure_memory_stalled_seconds_total": {"counter", "Time all tasks waited for memory since the start (PSI)."},
	"process_cgroup_cpu_throttled_seconds_total":    {"counter", "Time the cgroup's CPU quota held the process back since the start."},
}

// liveSessions is the count of live sessions by API, kept between scrapes.
type liveSessions struct {
	count func() (map[auth.API]int, error)

	mu   sync.Mutex
	at   time.Time
	last map[auth.API]int
}

// get answers the counts, recounting when they are older than
// liveSessionsEvery; a failed count keeps the last one.
func (l *liveSessions) get() map[auth.API]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil || time.Since(l.at) > liveSessionsEvery {
		if n, err := l.count(); err == nil {
			l.last, l.at = n, time.Now()
		}
	}
	return l.last
}
