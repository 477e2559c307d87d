package web_test

// Benchmarks of the whole service as serve runs it: Gin, auth with the
// default bcrypt cost, a hashing pool as wide as the cores and one P more
// for the scheduler (see asServe), the audit trail, bbolt on a real file,
// all behind a real listener and driven by a keep-alive client in the same
// process. Each reports its result against a baseline measured in the same
// run on the same cores, so that the ratios, unlike the raw rates, mean the
// same on any machine:
//
//	go test -run '^$' -bench . -benchtime=3s ./web/
//
// Throttling is off: the floods below come from one address on purpose, and
// the throttle would refuse them before any password is checked.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/captcha"
	"vmsauth/store"
	"vmsauth/web"
)

// benchPassword is every benchmark user's password.
const benchPassword = "bench-password-1"

// benchEnv is one running vmsauth for benchmarks.
type benchEnv struct {
	url     string
	db      *store.DB
	svc     *auth.Service
	hash    string // of benchPassword, at the default cost
	workers int    // the hashing pool's width: the cores, as serve has it
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	// As serve opens it: mapped pages given back every 10 s and every 128
	// checks that read the file.
	db, err := store.Open(filepath.Join(b.TempDir(), "vmsauth.db"), store.Options{ReleaseEvery: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	workers := runtime.GOMAXPROCS(0)
	svc, err := auth.New(db, auth.Config{HashWorkers: workers})
	if err != nil {
		b.Fatal(err)
	}
	auditor := auth.NewAuditor(db, 0, 0, nil, nil)
	b.Cleanup(auditor.Close)
	h, err := web.New(svc, web.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Audit:  auditor,
	})
	if err != nil {
		b.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(benchPassword), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{url: listen(b, h), db: db, svc: svc, hash: string(hash), workers: workers}
}

// asServe gives the calling benchmark serve's scheduler: one P more than
// the cores. testing sets GOMAXPROCS to the -cpu value for each benchmark
// and complains if one leaves it changed, so each sub-benchmark sets it
// itself and puts it back when it ends.
func asServe(b *testing.B) {
	cores := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(cores + 1)
	b.Cleanup(func() { runtime.GOMAXPROCS(cores) })
}

// listen serves h on a loopback port with serve's http.Server settings and
// returns its URL. Baselines are served the same way.
func listen(b *testing.B, h http.Handler) string {
	b.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config = web.NewServer("", h)
	srv.Start()
	b.Cleanup(srv.Close)
	return srv.URL
}

// addUsers stores n users who may use api, with benchPassword, and returns
// their logins. They go straight to the store: hashing n passwords at the
// real cost would only slow the setup.
func (e *benchEnv) addUsers(b *testing.B, n int, api auth.API) []string {
	b.Helper()
	logins := make([]string, n)
	now := time.Now()
	for i := range logins {
		logins[i] = fmt.Sprintf("bench%d", i)
		u := &auth.User{
			Login: logins[i], Name: logins[i], PasswordHash: e.hash,
			APIs: []auth.API{api}, Permissions: []string{"cameras.view", "archive.view"},
			CreatedAt: now, UpdatedAt: now,
		}
		if err := e.db.CreateUser(b.Context(), u); err != nil {
			b.Fatal(err)
		}
	}
	return logins
}

// addSessions stores n live admin sessions, spread over users, and returns
// their tokens. Their last activity is spread over the past minute, as on a
// busy box, so that checks fall due for their once-a-minute activity write
// at a steady rate rather than all at once.
//
// They are stored in the order of their token hashes, the key of every
// record and index but the one by public id (which the hash gives, in no
// order). That takes a few seconds: in the service's random order each
// commit of a batch rewrites a page per session, and the same sessions take
// more than twice as long. Lookups in the resulting trees cost the same.
func (e *benchEnv) addSessions(b *testing.B, n int, users []int64) []string {
	b.Helper()
	type token struct {
		text string
		hash auth.TokenHash
	}
	sorted := make([]token, n)
	for i := range sorted {
		sorted[i].text = randomString(32)
		sorted[i].hash = auth.HashToken(sorted[i].text)
	}
	slices.SortFunc(sorted, func(x, y token) int { return bytes.Compare(x.hash[:], y.hash[:]) })
	now := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	// Many writers at once, so that bbolt's Batch shares the commits.
	for range 64 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				s := &auth.Session{
					ID: sorted[i].hash.SessionID(), TokenHash: sorted[i].hash,
					UserID: users[i*len(users)/n], API: auth.APIAdmin,
					CreatedAt: now, LastSeen: now.Add(-time.Duration(mrand.Int64N(int64(time.Minute)))),
					ExpiresAt:  now.Add(auth.DefaultAdminTTL),
					ClientMeta: auth.ClientMeta{IP: "192.0.2.10", UserAgent: "bench", Client: "web"},
				}
				if err := e.db.CreateSession(b.Context(), s, auth.CreateOptions{Now: now}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	tokens := make([]string, n)
	for i, t := range sorted {
		tokens[i] = t.text
	}
	return tokens
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newClient is a keep-alive client with an idle connection kept for each of
// conns concurrent requests.
func newClient(b *testing.B, conns int) *http.Client {
	t := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true}
	b.Cleanup(t.CloseIdleConnections)
	return &http.Client{Transport: t}
}

// call sends req and reads the whole answer, so that the connection goes
// back to the pool. It fails unless the answer has the status.
func call(c *http.Client, req *http.Request, status int) error {
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err == nil && res.StatusCode != status {
		err = fmt.Errorf("%s %s: status %d, want %d", req.Method, req.URL.Path, res.StatusCode, status)
	}
	return err
}

// loginRequest is an admin API login.
func loginRequest(ctx context.Context, url, login, password string) *http.Request {
	body := fmt.Sprintf(`{"login":%q,"password":%q}`, login, password)
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/api/admin/v1/auth/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// verifyRequest is a token check as nginx's auth_request sends it.
func verifyRequest(url, token string) *http.Request {
	req, _ := http.NewRequest("GET", url+"/auth/verify", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// load runs n calls of send on workers goroutines, each sending its next
// request as soon as its last is answered. It returns the wall time and the
// latency of every call.
func load(workers, n int, send func(worker int) error) (time.Duration, []time.Duration, error) {
	latencies := make([]time.Duration, n)
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				t := time.Now()
				if err := send(w); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
				latencies[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	return time.Since(start), latencies, first
}

// perSecond is how many of n happen a second in d.
func perSecond(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// p99 is the 99th percentile of the latencies.
func p99(latencies []time.Duration) time.Duration {
	l := slices.Clone(latencies)
	slices.Sort(l)
	return l[(len(l)*99+99)/100-1]
}

// timed is load for throughput: it returns the wall time only, and fails
// the benchmark on an error.
func timed(b *testing.B, workers, n int, send func(worker int) error) time.Duration {
	b.Helper()
	d, _, err := load(workers, n, send)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// versus times n calls of run and n of baseline, in turns of about n/turns
// calls each, so that a change in the machine's speed during the run
// (other tenants, clock boost) falls on both alike. Only run's turns count
// in the benchmark's time. It returns the total time of each.
func versus(b *testing.B, n, turns int, run, baseline func(n int) time.Duration) (time.Duration, time.Duration) {
	var dRun, dBase time.Duration
	for i := range turns {
		k := n*(i+1)/turns - n*i/turns
		if k == 0 {
			continue
		}
		b.StopTimer()
		dBase += baseline(k)
		b.StartTimer()
		dRun += run(k)
	}
	return dRun, dBase
}

// rawBcrypt is the baseline of password logins: bcrypt.CompareHashAndPassword
// of the hash on one goroutine per core, the most that logins can reach on
// these cores.
func (e *benchEnv) rawBcrypt(b *testing.B) func(n int) time.Duration {
	return func(n int) time.Duration {
		return timed(b, e.workers, n, func(int) error {
			return bcrypt.CompareHashAndPassword([]byte(e.hash), []byte(benchPassword))
		})
	}
}

// BenchmarkLogin measures successful password logins (admin API, bcrypt
// cost 10, a session written for each) against raw bcrypt on the same
// cores. "pool" keeps the hashing pool just full; "64-parallel" is 64
// devices logging in at once, whose session writes must share commits
// rather than queue for an fsync each.
func BenchmarkLogin(b *testing.B) {
	e := newBenchEnv(b)
	logins := e.addUsers(b, 64, auth.APIAdmin)
	b.Run("pool", func(b *testing.B) {
		asServe(b)
		e.benchLogins(b, 4*e.workers, logins)
	})
	b.Run("64-parallel", func(b *testing.B) {
		asServe(b)
		e.benchLogins(b, 64, logins)
	})
}

// benchLogins runs b.N logins on workers clients, each its own user.
func (e *benchEnv) benchLogins(b *testing.B, workers int, logins []string) {
	client := newClient(b, workers)
	login := func(n int) time.Duration {
		return timed(b, workers, n, func(w int) error {
			return call(client, loginRequest(context.Background(), e.url, logins[w], benchPassword), http.StatusOK)
		})
	}
	b.ResetTimer()
	d, limit := versus(b, b.N, 4, login, e.rawBcrypt(b))
	b.ReportMetric(perSecond(b.N, d), "logins/s")
	b.ReportMetric(perSecond(b.N, limit), "bcrypt/s")
	b.ReportMetric(limit.Seconds()/d.Seconds(), "ratio")
}

// Token check load: verifyWorkers connections at once, as nginx in front
// of a busy box holds; checks use a working set of activeTokens of the
// stored sessions.
const (
	liveSessions  = 100_000
	verifyWorkers = 64
	activeTokens  = 1024
	floodClients  = 64
	// refusalFlooders is the connections of each client of the 429 flood.
	refusalFlooders = 1
	// checkers send token checks one after another while the flood runs,
	// to measure the latency each check sees.
	checkers = 4
)

// BenchmarkTokenCheck measures GET /auth/verify with 100k live sessions in
// the store: "throughput" against a bare Gin handler giving the same answer
// on the same kind of listener, "p99-under-flood" as the p99 latency while
// 64 clients flood wrong-password logins, against the idle p99.
func BenchmarkTokenCheck(b *testing.B) {
	e := newBenchEnv(b)
	var users []int64
	for _, login := range e.addUsers(b, 100, auth.APIAdmin) {
		u, err := e.db.UserByLogin(b.Context(), login)
		if err != nil {
			b.Fatal(err)
		}
		users = append(users, u.ID)
	}
	start := time.Now()
	all := e.addSessions(b, liveSessions, users)
	b.Logf("stored %d sessions in %v", liveSessions, time.Since(start).Round(time.Millisecond))
	active := make([]string, activeTokens)
	for i := range active {
		active[i] = all[mrand.IntN(len(all))]
	}
	check := func(c *http.Client, url string) error {
		return call(c, verifyRequest(url, active[mrand.IntN(len(active))]), http.StatusOK)
	}

	// throughput draws tokens from the working set, as a box's clients
	// check theirs again and again; throughput-spread from all 100k
	// sessions, so that nearly every check misses the cache and reads the
	// file: the worst case.
	for _, tc := range []struct {
		name   string
		tokens []string
	}{{"throughput", active}, {"throughput-spread", all}} {
		b.Run(tc.name, func(b *testing.B) {
			asServe(b)
			bare := listen(b, bareVerify(b, e.url, active[0]))
			client := newClient(b, verifyWorkers)
			checks := func(url string) func(n int) time.Duration {
				return func(n int) time.Duration {
					return timed(b, verifyWorkers, n, func(int) error {
						return call(client, verifyRequest(url, tc.tokens[mrand.IntN(len(tc.tokens))]), http.StatusOK)
					})
				}
			}
			// Open every connection before timing.
			checks(bare)(2 * verifyWorkers)
			checks(e.url)(2 * verifyWorkers)
			b.ResetTimer()
			d, base := versus(b, b.N, 10, checks(e.url), checks(bare))
			b.ReportMetric(perSecond(b.N, d), "checks/s")
			b.ReportMetric(perSecond(b.N, base), "bare/s")
			b.ReportMetric(base.Seconds()/d.Seconds(), "ratio")
		})
	}

	b.Run("p99-under-flood", func(b *testing.B) {
		asServe(b)
		client := newClient(b, checkers)
		timed(b, checkers, 2*checkers, func(int) error { return check(client, e.url) }) // connect
		_, idle, err := load(checkers, b.N, func(int) error { return check(client, e.url) })
		if err != nil {
			b.Fatal(err)
		}
		stop, failed := e.flood(b, "bench0")
		b.ResetTimer()
		_, busy, err := load(checkers, b.N, func(int) error { return check(client, e.url) })
		b.StopTimer()
		floodRate := stop()
		if err != nil {
			b.Fatal(err)
		}
		if failed() {
			b.Fatal("the flood's logins did not all fail with 422")
		}
		b.ReportMetric(float64(p99(idle).Microseconds())/1000, "idle-p99-ms")
		b.ReportMetric(float64(p99(busy).Microseconds())/1000, "flood-p99-ms")
		b.ReportMetric(float64(p99(busy))/float64(p99(idle)), "p99-ratio")
		b.ReportMetric(floodRate, "flood-logins/s")
	})
	b.Run("p99-under-429-flood", func(b *testing.B) { e.p99UnderRefusals(b, check) })
}

// p99UnderRefusals measures the token-check p99 while one client floods
// logins that the throttle refuses (429) and another floods captcha
// requests, past its budget of 20 almost at once, against the idle p99.
// Token checks and floods go to one server wired as serve wires it:
// throttle, captchas, audit trail and an Info-level log.
func (e *benchEnv) p99UnderRefusals(b *testing.B, check func(c *http.Client, url string) error) {
	asServe(b)
	auditor := auth.NewAuditor(e.db, 0, 0, nil, nil)
	b.Cleanup(auditor.Close)
	h, err := web.New(e.svc, web.Options{
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Throttle:       auth.NewThrottle(auth.ThrottleConfig{}),
		Captchas:       testCaptchas(b, captcha.Config{}),
		RequireCaptcha: true,
		Audit:          auditor,
	})
	if err != nil {
		b.Fatal(err)
	}
	url := listen(b, h)
	client := newClient(b, checkers)
	timed(b, checkers, 2*checkers, func(int) error { return check(client, url) }) // connect
	_, idle, err := load(checkers, b.N, func(int) error { return check(client, url) })
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var refused, captchas atomic.Int64
	var wg sync.WaitGroup
	flooder := func(n *atomic.Int64, req func() *http.Request) {
		c := newClient(b, refusalFlooders)
		for range refusalFlooders {
			wg.Go(func() {
				for ctx.Err() == nil {
					res, err := c.Do(req())
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					n.Add(1)
				}
			})
		}
	}
	login := `{"login":"victim","password":"guess","captcha":"00000","key":"none"}`
	flooder(&refused, func() *http.Request {
		req, _ := http.NewRequestWithContext(ctx, "POST", url+"/api/v1/token", strings.NewReader(login))
		req.Header.Set("Content-Type", "application/json")
		return req
	})
	flooder(&captchas, func() *http.Request {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/v1/captcha", nil)
		return req
	})
	for refused.Load() < 100 || captchas.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	b.ResetTimer()
	_, busy, err := load(checkers, b.N, func(int) error { return check(client, url) })
	b.StopTimer()
	took := time.Since(start)
	n, m := refused.Load(), captchas.Load()
	cancel()
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(p99(idle).Microseconds())/1000, "idle-p99-ms")
	b.ReportMetric(float64(p99(busy).Microseconds())/1000, "flood-p99-ms")
	b.ReportMetric(float64(p99(busy))/float64(p99(idle)), "p99-ratio")
	b.ReportMetric(perSecond(int(n), took), "refused-logins/s")
	b.ReportMetric(perSecond(int(m), took), "captcha-requests/s")
}

// flood starts floodClients clients sending wrong-password logins for
// login without pause, and returns once the first has been answered, so
// the hashing pool is busy. stop ends the flood and returns how many
// logins a second it made; failed reports whether any answer was other
// than the 422 of a wrong password.
func (e *benchEnv) flood(b *testing.B, login string) (stop func() float64, failed func() bool) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	client := newClient(b, floodClients)
	var answered atomic.Int64
	var bad atomic.Bool
	started := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range floodClients {
		wg.Go(func() {
			for ctx.Err() == nil {
				err := call(client, loginRequest(ctx, e.url, login, "wrong password"), http.StatusUnprocessableEntity)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					bad.Store(true)
				}
				answered.Add(1)
				once.Do(func() { close(started) })
			}
		})
	}
	<-started
	stop = func() float64 {
		rate := perSecond(int(answered.Load()), time.Since(start))
		cancel()
		wg.Wait()
		return rate
	}
	return stop, bad.Load
}

// bareVerify is the baseline of the token check: a Gin engine with one
// handler that sends what /auth/verify sends for token, headers and body,
// without looking anything up.
func bareVerify(b *testing.B, url, token string) http.Handler {
	b.Helper()
	res, err := http.DefaultClient.Do(verifyRequest(url, token))
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		b.Fatalf("verify: status %d, %v", res.StatusCode, err)
	}
	headers := map[string]string{}
	for name := range res.Header {
		if strings.HasPrefix(name, "X-Auth-") {
			headers[name] = res.Header.Get(name)
		}
	}
	r := gin.New()
	r.GET("/auth/verify", func(c *gin.Context) {
		for name, v := range headers {
			c.Header(name, v)
		}
		c.Data(http.StatusOK, "application/json; charset=utf-8", body)
	})
	return r
}
