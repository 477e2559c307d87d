package web

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"vmsauth/auth"
)

// metrics are vmsauth's Prometheus metrics, on a registry of their own so
// that each handler (and each test) counts alone.
type metrics struct {
	reg       *prometheus.Registry
	logins    *prometheus.CounterVec
	throttled *prometheus.CounterVec
	captchas  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	allow     []*net.IPNet
}

// liveSessionsEvery bounds how often the session count is recomputed: it
// walks every session, which a scrape every few seconds should not repeat.
const liveSessionsEvery = 30 * time.Second

func newMetrics(live func() (map[auth.API]int, error), allow []*net.IPNet) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmsauth_logins_total", Help: "Password login attempts by API and result.",
		}, []string{"api", "result"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmsauth_throttled_total", Help: "Requests refused with 429, by API (captcha counts as client).",
		}, []string{"api"}),
		captchas: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmsauth_captchas_total", Help: "Captchas issued, solved and failed.",
		}, []string{"event"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vmsauth_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "route", "code"}),
		allow: allow,
	}
	m.reg.MustRegister(m.logins, m.throttled, m.captchas, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if live != nil {
		m.reg.MustRegister(newLiveSessions(live))
	}
	return m
}

// observe records the latency of every request under its route pattern,
// never its raw path: ids in paths would make the label set unbounded.
func (m *metrics) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	m.latency.WithLabelValues(c.Request.Method, route, strconv.Itoa(c.Writer.Status())).Observe(time.Since(start).Seconds())
}

// handler serves /metrics to loopback and the allowed networks only: the
// numbers tell an attacker how the box is doing.
func (m *metrics) handler() gin.HandlerFunc {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return func(c *gin.Context) {
		ip := net.ParseIP(c.RemoteIP())
		ok := ip != nil && ip.IsLoopback()
		for _, n := range m.allow {
			ok = ok || (ip != nil && n.Contains(ip))
		}
		if !ok {
			message(c, http.StatusForbidden, "forbidden")
			return
		}
		h.ServeHTTP(c.Writer, c.Request)
	}
}

// liveSessions is a gauge of live sessions by API, cached between scrapes.
type liveSessions struct {
	desc  *prometheus.Desc
	count func() (map[auth.API]int, error)

	mu   sync.Mutex
	at   time.Time
	last map[auth.API]int
}

func newLiveSessions(count func() (map[auth.API]int, error)) *liveSessions {
	return &liveSessions{
		desc:  prometheus.NewDesc("vmsauth_live_sessions", "Sessions whose tokens are live, by API.", []string{"api"}, nil),
		count: count,
	}
}

func (l *liveSessions) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *liveSessions) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	if l.last == nil || time.Since(l.at) > liveSessionsEvery {
		if n, err := l.count(); err == nil {
			l.last, l.at = n, time.Now()
		}
	}
	counts := l.last
	l.mu.Unlock()
	for _, api := range auth.AllAPIs {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, float64(counts[api]), string(api))
	}
}
