package web

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

// The metrics are written by VictoriaMetrics' client: the same Prometheus
// text format as the official client without linking protobuf, which made
// the binary 2.3 MB larger, and the binary is resident memory on the box.
// Its metadata (# TYPE lines) stays off: v1.35.1 types summaries
// "unsupported", which a Prometheus scrape rejects.

// metrics are vmsauth's Prometheus metrics, in a set of their own so that
// each handler (and each test) counts alone.
type metrics struct {
	set   *vm.Set
	allow []*net.IPNet

	// Counters are found by their labels under a read lock: the set's own
	// GetOrCreate takes a mutex and builds the name on every request.
	mu       sync.RWMutex
	counters map[counterKey]*vm.Counter
	routes   map[routeKey]*vm.Summary
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

// latencyWindow is how far back the latency quantiles look.
const latencyWindow = 5 * time.Minute

var latencyQuantiles = []float64{0.5, 0.9, 0.99}

func newMetrics(live func() (map[auth.API]int, error), allow []*net.IPNet) *metrics {
	m := &metrics{
		set:      vm.NewSet(),
		allow:    allow,
		counters: map[counterKey]*vm.Counter{},
		routes:   map[routeKey]*vm.Summary{},
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
	m.counter(counterKey{"vmsauth_http_requests_total", [3]string{method, route, strconv.Itoa(code)}}, 1)
	k := routeKey{method, route}
	m.mu.RLock()
	sum := m.routes[k]
	m.mu.RUnlock()
	if sum == nil {
		m.mu.Lock()
		if sum = m.routes[k]; sum == nil {
			sum = m.set.NewSummaryExt(`vmsauth_http_request_duration_seconds{method="`+method+`",route="`+route+`"}`,
				latencyWindow, latencyQuantiles)
			m.routes[k] = sum
		}
		m.mu.Unlock()
	}
	sum.Update(took.Seconds())
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
		c.Header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		c.Status(http.StatusOK)
		m.set.WritePrometheus(c.Writer)
		vm.WriteProcessMetrics(c.Writer)
	}
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
