//go:build linux

// Command sitebench measures a site of several boxes on one etcd cluster,
// each figure against a baseline measured in the same run, over several
// rounds that alternate the two (A B, B A, ...) so that drift of the shared
// machine cancels; it reports the median and the range of each ratio:
//
//   - token checks: GET /auth/verify with keep-alive, a few tokens (cache
//     hits), on a site box against the same binary on its own bbolt file
//     (goal ≥ 0.8);
//   - logins: 64 concurrent clients spread over two site boxes against what
//     bcrypt alone does on every core at the same cost (goal ≥ 0.9);
//   - revocation delay: a logout on box A, then the time until box B, polled
//     without pause, refuses the token (goal p99 ≤ 50 ms).
//
// It starts its own 3-member etcd cluster (the etcd on PATH, Debian's
// etcd-server) on free loopback ports with data in a temporary directory,
// and runs the real release binary. Clients log in through the client API
// with the captcha off (serve --captcha=false) and the throttle's per-IP
// limit raised (--throttle-ip-limit); each login client comes from an
// address of its own in 127.0.1.0/24, as on a site every camera and
// viewer does, so that the site's counters are per client. It is a tool for people; nothing of it goes into the release.
//
//	make release && go run ./tools/sitebench
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/tools/internal/procstat"
)

type options struct {
	bin         string
	rounds      int
	checkTime   time.Duration
	checkConns  int
	loginTime   time.Duration
	clients     int
	cost        int
	revocations int
	parts       []string
}

func main() {
	var o options
	dist := flag.String("dist", "dist", "directory of the release binaries")
	flag.StringVar(&o.bin, "bin", "", "vmsauth binary (default: DIST/vmsauth-linux-GOARCH)")
	flag.IntVar(&o.rounds, "rounds", 6, "rounds of each throughput figure (each runs the case and its baseline)")
	flag.DurationVar(&o.checkTime, "check-time", 4*time.Second, "length of each token-check run")
	flag.IntVar(&o.checkConns, "check-conns", 16, "concurrent keep-alive connections of the token checks")
	flag.DurationVar(&o.loginTime, "login-time", 8*time.Second, "length of each login run and bcrypt baseline")
	flag.IntVar(&o.clients, "clients", 64, "concurrent login clients, spread over the two boxes")
	flag.IntVar(&o.cost, "bcrypt-cost", bcrypt.DefaultCost, "bcrypt cost of the boxes' password hashes")
	flag.IntVar(&o.revocations, "revocations", 200, "logouts timed for the revocation delay")
	parts := flag.String("parts", "checks,logins,revocation", "what to measure")
	flag.Parse()
	o.parts = strings.Split(*parts, ",")
	if o.bin == "" {
		o.bin = filepath.Join(*dist, "vmsauth-linux-"+runtime.GOARCH)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "sitebench:", err)
		os.Exit(1)
	}
}

const (
	adminPassword = "sitebench-admin-1"
	userPassword  = "sitebench-user-1"
)

func run(o options) error {
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		return fmt.Errorf("etcd not found: apt-get install etcd-server")
	}
	tmp, err := os.MkdirTemp("", "sitebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Printf("# sitebench: %s, etcd %s (3 members on loopback), %d CPUs, load average at start %s\n",
		o.bin, etcdVersion(etcdBin), runtime.NumCPU(), procstat.Loadavg())
	c, err := startCluster(etcdBin, filepath.Join(tmp, "etcd"), 3, "http", "http", nil, &http.Client{Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer c.stop()
	site := []string{"--etcd", c.endpoints()}
	// Box A first: it makes the site's first admin; B then finds it.
	a, err := startBox(o, filepath.Join(tmp, "a"), site...)
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := startBox(o, filepath.Join(tmp, "b"), site...)
	if err != nil {
		return err
	}
	defer b.stop()
	f, err := startBox(o, filepath.Join(tmp, "file"))
	if err != nil {
		return err
	}
	defer f.stop()

	var rows []row
	for _, p := range o.parts {
		var r []row
		switch p {
		case "checks":
			r, err = checks(o, a, f)
		case "logins":
			r, err = logins(o, c, a, b)
		case "revocation":
			r, err = revocation(o, a, b)
		default:
			err = fmt.Errorf("unknown part %q", p)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rows = append(rows, r...)
	}
	fmt.Printf("\n| figure | result | goal | detail |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | **%s** | %s | %s |\n", r.what, r.result, r.goal, r.detail)
	}
	fmt.Printf("\n# load average at end %s\n", procstat.Loadavg())
	return nil
}

type row struct{ what, result, goal, detail string }

// checks measures GET /auth/verify on site box a against the file box f.
func checks(o options, a, f *box) ([]row, error) {
	tokens := map[*box][]string{}
	for _, bx := range []*box{a, f} {
		if err := bx.addUser("viewer", 100); err != nil {
			return nil, err
		}
		for range 4 {
			tok, err := bx.login("viewer")
			if err != nil {
				return nil, err
			}
			tokens[bx] = append(tokens[bx], tok)
		}
		// Warm connections and caches.
		if _, _, err := checkRun(bx, tokens[bx], o.checkConns, time.Second); err != nil {
			return nil, err
		}
	}
	var ratios, siteRates, fileRates, siteCPU, fileCPU []float64
	for r := range o.rounds {
		order := []*box{f, a}
		if r%2 == 1 {
			order = []*box{a, f}
		}
		rates := map[*box]float64{}
		for _, bx := range order {
			rps, cpu, err := checkRun(bx, tokens[bx], o.checkConns, o.checkTime)
			if err != nil {
				return nil, err
			}
			rates[bx] = rps
			if bx == a {
				siteRates, siteCPU = append(siteRates, rps), append(siteCPU, cpu)
			} else {
				fileRates, fileCPU = append(fileRates, rps), append(fileCPU, cpu)
			}
			fmt.Fprintf(os.Stderr, "checks round %d %s: %.0f/s, %.1f µs CPU per check\n", r+1, bx.name, rps, cpu)
		}
		ratios = append(ratios, rates[a]/rates[f])
	}
	return []row{{
		what: "token checks, site box / same box on bbolt", result: medianRange(ratios, "%.2f"), goal: "≥ 0.8",
		detail: fmt.Sprintf("site %s/s, bbolt %s/s; box CPU per check: site %s µs, bbolt %s µs; %d connections",
			medianRange(siteRates, "%.0f"), medianRange(fileRates, "%.0f"),
			medianRange(siteCPU, "%.1f"), medianRange(fileCPU, "%.1f"), o.checkConns),
	}}, nil
}

// checkRun runs conns keep-alive clients against bx's /auth/verify for d,
// each going round the tokens, and returns checks per second and the box's
// CPU time per check in µs. Any answer but 200 fails the run.
func checkRun(bx *box, tokens []string, conns int, d time.Duration) (rps, cpuUS float64, err error) {
	client := bx.client(conns)
	defer client.CloseIdleConnections()
	var n atomic.Int64
	var bad atomic.Value
	stop := time.Now().Add(d)
	cpu0 := procstat.CPUTime(bx.cmd.Process.Pid)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, bx.base+"/auth/verify", nil)
			for j := i; time.Now().Before(stop); j++ {
				req.Header.Set("Authorization", "Bearer "+tokens[j%len(tokens)])
				res, err := client.Do(req)
				if err != nil {
					bad.Store(err.Error())
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					bad.Store(fmt.Sprintf("HTTP %d", res.StatusCode))
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if v := bad.Load(); v != nil {
		return 0, 0, fmt.Errorf("%s: a token check failed: %s", bx.name, v)
	}
	cpu := procstat.CPUTime(bx.cmd.Process.Pid) - cpu0
	return float64(n.Load()) / elapsed.Seconds(), float64(cpu.Microseconds()) / float64(max(n.Load(), 1)), nil
}

// logins measures client-API logins, o.clients concurrent clients, half on
// box a and half on box b, each its own user, against bcrypt comparisons at
// the same cost on every core of this machine, in the same process.
func logins(o options, c *cluster, a, b *box) ([]row, error) {
	for i := range o.clients {
		if err := a.addUser(fmt.Sprintf("cam%d", i), 1000); err != nil {
			return nil, err
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(userPassword), o.cost)
	if err != nil {
		return nil, err
	}
	var ratios, loginRates, bcryptRates []float64
	refused := map[int]int{}
	// The etcd requests of the logins, summed over the rounds.
	reqs, total := map[string]float64{}, 0

	for r := range o.rounds {
		steps := []string{"bcrypt", "logins"}
		if r%2 == 1 {
			slices.Reverse(steps)
		}
		var lr, br float64
		for _, s := range steps {
			if s == "bcrypt" {
				br = bcryptRun(hash, o.loginTime)
				fmt.Fprintf(os.Stderr, "logins round %d bcrypt alone: %.1f/s\n", r+1, br)
				continue
			}
			var codes map[int]int
			before, err := c.requests()
			if err != nil {
				return nil, err
			}
			var n int
			lr, n, codes, err = loginRun(o, a, b)
			if err != nil {
				return nil, err
			}
			after, err := c.requests()
			if err != nil {
				return nil, err
			}
			for m, v := range after {
				reqs[m] += v - before[m]
			}
			total += n
			for code, n := range codes {
				refused[code] += n
			}
			fmt.Fprintf(os.Stderr, "logins round %d: %.1f/s, refused %v\n", r+1, lr, codes)
		}
		loginRates, bcryptRates, ratios = append(loginRates, lr), append(bcryptRates, br), append(ratios, lr/br)
	}
	detail := fmt.Sprintf("logins %s/s, bcrypt alone %s/s (cost %d, %d threads at nice 10 on %d cores)",
		medianRange(loginRates, "%.1f"), medianRange(bcryptRates, "%.1f"), o.cost, 2*runtime.NumCPU(), runtime.NumCPU())
	if len(refused) > 0 {
		detail += fmt.Sprintf("; answers other than 200: %v", refused)
	}
	if total > 0 {
		var per []string
		for _, m := range slices.Sorted(maps.Keys(reqs)) {
			if v := reqs[m] / float64(total); v >= 0.05 {
				per = append(per, fmt.Sprintf("%s %.2f", m, v))
			}
		}
		detail += "; etcd requests per login: " + strings.Join(per, ", ")
	}
	return []row{{what: fmt.Sprintf("logins, %d clients over two site boxes / bcrypt on all cores", o.clients),
		result: medianRange(ratios, "%.2f"), goal: "≥ 0.9", detail: detail}}, nil
}

// bcryptRun compares the right password against hash on every core for d
// and returns comparisons per second. It runs as many threads as the two
// boxes' hash pools together (each is as wide as the cores), each at nice
// 10, where a box's hashing threads run once they have waited their turn
// (auth's lowPriority): on a machine shared with other work, the kernel
// shares the cores per thread, and a baseline with fewer threads or another
// priority would get another share of them than the boxes get.
func bcryptRun(hash []byte, d time.Duration) float64 {
	// As many of them running at once as the boxes can: GOMAXPROCS would
	// otherwise hold this process to one running thread per core.
	threads := 2 * runtime.NumCPU()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
	var n atomic.Int64
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			// Never unlocked: the thread ends with the goroutine and its
			// priority with it.
			runtime.LockOSThread()
			_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 10)
			for time.Now().Before(stop) {
				if bcrypt.CompareHashAndPassword(hash, []byte(userPassword)) == nil {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// loginRun runs the clients for o.loginTime and returns successful logins
// per second, their number and the count of each other status code. A
// transport error fails the run.
func loginRun(o options, a, b *box) (float64, int, map[int]int, error) {
	var n atomic.Int64
	var mu sync.Mutex
	codes := map[int]int{}
	var bad atomic.Value
	stop := time.Now().Add(o.loginTime)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range o.clients {
		bx := a
		if i%2 == 1 {
			bx = b
		}
		// Each client from an address of its own, as cameras and
		// viewers come: the site counts each address under its own key.
		client := bx.clientFrom(1, net.IPv4(127, 0, 1, byte(i+1)))
		defer client.CloseIdleConnections()
		body := fmt.Sprintf(`{"login":"cam%d","password":%q}`, i, userPassword)
		wg.Go(func() {
			for time.Now().Before(stop) {
				res, err := client.Post(bx.base+"/api/v1/token", "application/json", strings.NewReader(body))
				if err != nil {
					bad.Store(err.Error())
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					n.Add(1)
					continue
				}
				mu.Lock()
				codes[res.StatusCode]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		return 0, 0, nil, fmt.Errorf("a login failed: %s", v)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), int(n.Load()), codes, nil
}

// revocation logs a user in on a, polls its token on b without pause, logs
// it out on a and times how long b goes on accepting it after a's logout
// answered (0 when b refused it before that answer arrived).
func revocation(o options, a, b *box) ([]row, error) {
	if err := a.addUser("revoked", 10); err != nil {
		return nil, err
	}
	ca, cb := a.client(1), b.client(1)
	var delays, fromSend []float64
	for i := range o.revocations {
		tok, err := a.login("revoked")
		if err != nil {
			return nil, err
		}
		var firstOK sync.Once
		okSeen := make(chan struct{})
		type refusal struct {
			at     time.Time
			status int
		}
		refused := make(chan refusal, 1)
		stopPoll := make(chan struct{})
		go func() {
			req, _ := http.NewRequest(http.MethodGet, b.base+"/auth/verify", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			for {
				select {
				case <-stopPoll:
					return
				default:
				}
				res, err := cb.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					firstOK.Do(func() { close(okSeen) })
					continue
				}
				refused <- refusal{time.Now(), res.StatusCode}
				return
			}
		}()
		select {
		case <-okSeen:
		case <-time.After(5 * time.Second):
			close(stopPoll)
			return nil, fmt.Errorf("box B never accepted a token made on A")
		}
		req, _ := http.NewRequest(http.MethodPost, a.base+"/api/v1/logout", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		sent := time.Now()
		res, err := ca.Do(req)
		if err != nil {
			close(stopPoll)
			return nil, err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		done := time.Now()
		if res.StatusCode != http.StatusOK {
			close(stopPoll)
			return nil, fmt.Errorf("logout on A: HTTP %d", res.StatusCode)
		}
		select {
		case r := <-refused:
			if r.status != http.StatusUnauthorized {
				close(stopPoll)
				return nil, fmt.Errorf("sample %d: box B answered %d, want 401 for a token logged out", i, r.status)
			}
			delays = append(delays, max(0, r.at.Sub(done).Seconds()*1000))
			fromSend = append(fromSend, r.at.Sub(sent).Seconds()*1000)
		case <-time.After(10 * time.Second):
			close(stopPoll)
			return nil, fmt.Errorf("sample %d: box B still accepts the token 10 s after the logout", i)
		}
		close(stopPoll)
	}
	slices.Sort(delays)
	slices.Sort(fromSend)
	return []row{{
		what: "revocation delay, logout on A until B refuses", goal: "p99 ≤ 50 ms",
		result: fmt.Sprintf("p50 %.2f ms, p99 %.2f ms", pct(delays, 50), pct(delays, 99)),
		detail: fmt.Sprintf("%d samples, max %.2f ms; from the logout's request: p50 %.2f ms, p99 %.2f ms",
			len(delays), delays[len(delays)-1], pct(fromSend, 50), pct(fromSend, 99)),
	}}, nil
}

// pct is the p-th percentile of sorted xs (nearest rank).
func pct(sorted []float64, p float64) float64 {
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// medianRange formats xs as "median (min–max)".
func medianRange(xs []float64, format string) string {
	s := slices.Sorted(slices.Values(xs))
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", m, s[0], s[len(s)-1])
}

// box is one running vmsauth serve.
type box struct {
	name   string
	cmd    *exec.Cmd
	base   string
	admin  string // an admin token
	exited chan error
	out    *bytes.Buffer
}

// startBox runs the release binary on data, plain HTTP on loopback (the
// TLS handshake is not what is measured; keep-alive makes it rare anyway).
func startBox(o options, data string, extra ...string) (*box, error) {
	addr := procstat.FreeAddr()
	name := "bbolt"
	if len(extra) > 0 {
		name = "site " + filepath.Base(data)
	}
	args := append([]string{"serve", "--data", data, "--listen", addr, "--insecure-http", "--captcha=false",
		"--log-level", "warn", "--bcrypt-cost", strconv.Itoa(o.cost), "--throttle-ip-limit", "100000"}, extra...)
	cmd := exec.Command(o.bin, args...)
	cmd.Env = append(os.Environ(), "VMSAUTH_ADMIN_PASSWORD="+adminPassword)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	bx := &box{name: name, cmd: cmd, base: "http://" + addr, exited: make(chan error, 1), out: out}
	go func() { bx.exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(bx.base + "/healthz"); err == nil {
			res.Body.Close()
			var body struct {
				AccessToken string `json:"access_token"`
			}
			if err := bx.post("/api/admin/v1/auth/token", "", map[string]any{"login": "admin", "password": adminPassword}, &body); err != nil {
				bx.stop()
				return nil, err
			}
			bx.admin = body.AccessToken
			return bx, nil
		}
		select {
		case err := <-bx.exited:
			return nil, fmt.Errorf("vmsauth exited (%v):\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	bx.stop()
	return nil, fmt.Errorf("vmsauth did not answer:\n%s", out)
}

// client is an HTTP client with keep-alive for conns connections to bx.
func (bx *box) client(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
}

// clientFrom is client whose connections come from the address ip.
func (bx *box) clientFrom(conns int, ip net.IP) *http.Client {
	c := bx.client(conns)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	c.Transport.(*http.Transport).DialContext = d.DialContext
	return c
}

// post sends JSON and decodes a 200's answer into out; anything else is an
// error with the body.
func (bx *box) post(path, token string, in, out any) error {
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, bx.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s %s: HTTP %d %s", bx.name, path, res.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// addUser creates a client-API user through the admin API.
func (bx *box) addUser(login string, sessionsLimit int) error {
	return bx.post("/api/admin/v1/users", bx.admin, map[string]any{
		"login": login, "password": userPassword, "apis": []string{"client"}, "sessions_limit": sessionsLimit,
	}, nil)
}

// login logs login in through the client API and returns its token.
func (bx *box) login(login string) (string, error) {
	var body struct {
		AccessToken string `json:"access_token"`
	}
	err := bx.post("/api/v1/token", "", map[string]any{"login": login, "password": userPassword}, &body)
	return body.AccessToken, err
}

func (bx *box) stop() {
	_ = bx.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-bx.exited:
	case <-time.After(30 * time.Second):
		_ = bx.cmd.Process.Kill()
	}
}

func etcdVersion(bin string) string {
	out, _ := exec.Command(bin, "--version").Output()
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "etcd Version: "))
}
