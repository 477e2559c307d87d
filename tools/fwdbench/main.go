//go:build linux

// Command fwdbench measures what forward auth costs a reverse proxy on the
// box: requests per second through nginx (one worker) with wrk, to a static
// location protected by auth_request to vmsauth's --forward-auth-listen,
// against the same location whose auth subrequest goes, over the same kind
// of socket with the same keep-alive, to a second nginx server block that
// only answers 200 with the same headers (an upstream that costs nothing),
// and against the location unprotected. It does so over a unix socket and
// over TCP loopback, alternating the runs (A B C, then C B A, ...) so that
// drift of the shared machine cancels, and reports each ratio's range over
// the rounds. It runs the real release binary; it is a tool for people and
// needs nginx and wrk (Debian packages).
//
//	make release && go run ./tools/fwdbench
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vmsauth/tools/internal/procstat"
)

func main() {
	dist := flag.String("dist", "dist", "directory of the release binaries")
	bin := flag.String("bin", "", "vmsauth binary (default: DIST/vmsauth-linux-GOARCH)")
	duration := flag.Duration("duration", 5*time.Second, "length of each wrk run")
	rounds := flag.Int("rounds", 4, "rounds per transport (each runs every location once)")
	conns := flag.Int("connections", 32, "wrk connections")
	transports := flag.String("transports", "unix,tcp", "transports to measure: unix, tcp")
	showConfig := flag.Bool("show-config", false, "print the nginx configuration used and exit")
	only := flag.String("locations", strings.Join(locations, ","), "locations to run (for profiling one)")
	flag.Parse()
	locations = strings.Split(*only, ",")
	if *bin == "" {
		*bin = filepath.Join(*dist, "vmsauth-linux-"+runtime.GOARCH)
	}
	if *showConfig {
		fmt.Print(nginxConfig("unix", "/tmp/fwdbench", 8080, "unix:/var/lib/vmsauth/forward-auth.sock", "unix:/tmp/fwdbench/null.sock", "unix:/tmp/fwdbench/nullproc.sock", "archive-view,..."))
		return
	}
	if err := run(*bin, *duration, *rounds, *conns, strings.Split(*transports, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "fwdbench:", err)
		os.Exit(1)
	}
}

// The locations measured: the same static file, unprotected, behind the
// zero-cost upstream served by the same nginx worker ("null", the baseline
// of the goal), behind the same upstream served by a second nginx process
// of its own ("nullproc": like vmsauth, it runs beside the worker rather
// than on it), and behind vmsauth.
var locations = []string{"open", "null", "nullproc", "vmsauth"}

func run(bin string, d time.Duration, rounds, conns int, transports []string) error {
	for _, tool := range []string{"nginx", "wrk"} {
		if _, err := lookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install %s", tool, tool)
		}
	}
	fmt.Printf("# fwdbench: nginx %s, one worker; wrk -t1 -c%d -d%s; %d rounds (ABC CBA ...)\n", nginxVersion(), conns, d, rounds)
	fmt.Printf("# %s, %d CPUs, load average at start %s\n", bin, runtime.NumCPU(), procstat.Loadavg())
	for _, tr := range transports {
		if err := measure(bin, tr, d, rounds, conns); err != nil {
			return fmt.Errorf("%s: %w", tr, err)
		}
	}
	fmt.Printf("# load average at end %s\n", procstat.Loadavg())
	return nil
}

// measure runs one transport: a fresh vmsauth and nginx, then the rounds.
func measure(bin, transport string, d time.Duration, rounds, conns int) error {
	tmp, err := os.MkdirTemp("", "fwdbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	data := filepath.Join(tmp, "data")

	var faFlag, vmsUpstream, nullUpstream, procUpstream string
	switch transport {
	case "unix":
		faFlag = "unix:" + filepath.Join(data, "forward-auth.sock")
		vmsUpstream = faFlag
		nullUpstream = "unix:" + filepath.Join(tmp, "null.sock")
		procUpstream = "unix:" + filepath.Join(tmp, "nullproc.sock")
	case "tcp":
		faFlag, nullUpstream, procUpstream = procstat.FreeAddr(), procstat.FreeAddr(), procstat.FreeAddr()
		vmsUpstream = faFlag
	default:
		return fmt.Errorf("unknown transport %q", transport)
	}
	vms, err := startVmsauth(bin, data, faFlag)
	if err != nil {
		return err
	}
	defer vms.stop()
	token, perms, err := vms.token()
	if err != nil {
		return err
	}

	procDir := filepath.Join(tmp, "nullproc")
	nullProc, err := startNginx(procDir, nullConfig(procDir, procUpstream, perms), procUpstream)
	if err != nil {
		return err
	}
	defer nullProc.stop()
	port, _ := strconv.Atoi(strings.TrimPrefix(procstat.FreeAddr(), "127.0.0.1:"))
	conf := nginxConfig(transport, tmp, port, vmsUpstream, nullUpstream, procUpstream, perms)
	ngx, err := startNginx(tmp, conf, fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer ngx.stop()

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	// Every location must answer 200 before it is timed, and a short run
	// warms nginx's keep-alive pools and vmsauth's check cache.
	for _, loc := range locations {
		if _, _, err := wrk(base+"/"+loc+"/ok.txt", token, conns, time.Second); err != nil {
			return fmt.Errorf("warm-up of /%s/: %w", loc, err)
		}
	}
	// CPU time per request of each process, which the machine's other
	// load disturbs less than the rates: nginx (its worker), the nginx of
	// the zero-cost upstream, vmsauth.
	procs := []struct {
		name string
		pid  int
	}{{"nginx", ngx.cmd.Process.Pid}, {"upstream nginx", nullProc.cmd.Process.Pid}, {"vmsauth", vms.cmd.Process.Pid}}
	rates := map[string][]float64{}
	cpu := map[string][]time.Duration{} // loc/process → CPU per request
	for r := range rounds {
		order := slices.Clone(locations)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, loc := range order {
			before := make([]time.Duration, len(procs))
			for i, p := range procs {
				before[i] = procstat.CPUTime(p.pid)
			}
			rps, n, err := wrk(base+"/"+loc+"/ok.txt", token, conns, d)
			if err != nil {
				return fmt.Errorf("/%s/: %w", loc, err)
			}
			for i, p := range procs {
				k := loc + "/" + p.name
				cpu[k] = append(cpu[k], (procstat.CPUTime(p.pid)-before[i])/time.Duration(n))
			}
			rates[loc] = append(rates[loc], rps)
			fmt.Fprintf(os.Stderr, "%s round %d /%s/: %.0f/s\n", transport, r+1, loc, rps)
		}
	}
	fmt.Printf("\n## %s (vmsauth --forward-auth-listen %s)\n\n", transport, faFlag)
	for _, loc := range locations {
		fmt.Printf("- /%s/: %s requests/s; CPU per request:", loc, span(rates[loc], "%.0f"))
		for _, p := range procs {
			if ds := cpu[loc+"/"+p.name]; slices.Max(ds) > 0 {
				us := make([]float64, len(ds))
				for i, d := range ds {
					us[i] = float64(d) / float64(time.Microsecond)
				}
				fmt.Printf(" %s %s µs,", p.name, span(us, "%.1f"))
			}
		}
		fmt.Println()
	}
	// Each ratio is of two runs of the same round, next to each other.
	for _, r := range []struct{ a, b, what string }{
		{"vmsauth", "null", "vmsauth / zero-cost upstream (goal >= 0.9)"},
		{"vmsauth", "nullproc", "vmsauth / zero-cost upstream in its own process"},
		{"vmsauth", "open", "vmsauth / unprotected"},
		{"null", "open", "zero-cost upstream / unprotected"},
	} {
		if len(rates[r.a]) == 0 || len(rates[r.b]) == 0 {
			continue
		}
		var out []float64
		for i := range rates[r.a] {
			out = append(out, rates[r.a][i]/rates[r.b][i])
		}
		fmt.Printf("- %s: **%s**, median %.2f\n", r.what, span(out, "%.2f"), median(out))
	}
	return nil
}

// median is the median of xs.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// span formats the range of xs.
func span(xs []float64, format string) string {
	lo, hi := slices.Min(xs), slices.Max(xs)
	return fmt.Sprintf(format+"–"+format, lo, hi)
}

// nginxConfig is the configuration measured: the README's example (an
// upstream with keep-alive, HTTP/1.1, no Connection header), applied to a
// static file, beside the same with an nginx server block as the upstream.
// Both upstreams answer the same four X-Auth-* headers (perms is what
// vmsauth answers for the admin), and the protected locations use them, so
// nginx does the same work for each.
func nginxConfig(transport, dir string, port int, vmsUpstream, nullUpstream, procUpstream, perms string) string {
	user := ""
	if os.Geteuid() == 0 {
		// The workers must reach vmsauth's socket in its 0710 data
		// directory; on a box that is --forward-auth-group's job.
		user = "user root;\n"
	}
	return fmt.Sprintf(`# fwdbench, transport %[1]s
%[2]sworker_processes 1;
pid %[3]s/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[3]s/body;
    proxy_temp_path %[3]s/proxy;
    fastcgi_temp_path %[3]s/fastcgi;
    uwsgi_temp_path %[3]s/uwsgi;
    scgi_temp_path %[3]s/scgi;
    open_file_cache max=16;

    upstream vmsauth {
        server %[5]s;
        keepalive 32;
    }
    upstream null {
        server %[6]s;
        keepalive 32;
    }
    upstream nullproc {
        server %[9]s;
        keepalive 32;
    }

    server {
        listen 127.0.0.1:%[4]d;
        root %[3]s/www;

        location /open/ { }
        location /null/ {
            auth_request /_null;
            auth_request_set $auth_user_id $upstream_http_x_auth_user_id;
            auth_request_set $auth_login $upstream_http_x_auth_login;
            auth_request_set $auth_realm $upstream_http_x_auth_realm;
            auth_request_set $auth_permissions $upstream_http_x_auth_permissions;
            add_header X-User "$auth_user_id $auth_login $auth_realm $auth_permissions";
        }
        location /nullproc/ {
            auth_request /_nullproc;
            auth_request_set $auth_user_id $upstream_http_x_auth_user_id;
            auth_request_set $auth_login $upstream_http_x_auth_login;
            auth_request_set $auth_realm $upstream_http_x_auth_realm;
            auth_request_set $auth_permissions $upstream_http_x_auth_permissions;
            add_header X-User "$auth_user_id $auth_login $auth_realm $auth_permissions";
        }
        location /vmsauth/ {
            auth_request /_vmsauth;
            auth_request_set $auth_user_id $upstream_http_x_auth_user_id;
            auth_request_set $auth_login $upstream_http_x_auth_login;
            auth_request_set $auth_realm $upstream_http_x_auth_realm;
            auth_request_set $auth_permissions $upstream_http_x_auth_permissions;
            add_header X-User "$auth_user_id $auth_login $auth_realm $auth_permissions";
        }
        location = /_null {
            internal;
            proxy_pass http://null/auth/verify?permission=archive-view;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
        location = /_nullproc {
            internal;
            proxy_pass http://nullproc/auth/verify?permission=archive-view;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
        location = /_vmsauth {
            internal;
            proxy_pass http://vmsauth/auth/verify?permission=archive-view;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
    }

    # The upstream that costs nothing: vmsauth's answer, from nginx itself.
%[7]s}
`, transport, user, dir, port, vmsUpstream, nullUpstream, nullServer(nullUpstream, perms), perms, procUpstream)
}

// nullServer is the server block of the zero-cost upstream at addr.
func nullServer(addr, perms string) string {
	return fmt.Sprintf(`    server {
        listen %s;
        location / {
            add_header X-Auth-User-Id 1;
            add_header X-Auth-Login admin;
            add_header X-Auth-Realm integration;
            add_header X-Auth-Permissions "%s";
            return 200;
        }
    }
`, addr, perms)
}

// nullConfig is a second nginx, one worker, serving only the zero-cost
// upstream at addr.
func nullConfig(dir, addr, perms string) string {
	return fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s}
`, dir, nullServer(addr, perms))
}

// vmsauth is one running release binary.
type vmsauth struct {
	cmd    *exec.Cmd
	base   string
	fa     string
	exited chan error
	out    *bytes.Buffer
}

const adminPassword = "fwdbench-admin-1"

func startVmsauth(bin, data, fa string) (*vmsauth, error) {
	addr := procstat.FreeAddr()
	cmd := exec.Command(bin, "serve", "--data", data, "--listen", addr, "--captcha=false",
		"--log-level", "warn", "--forward-auth-listen", fa)
	cmd.Env = append(os.Environ(), "VMSAUTH_ADMIN_PASSWORD="+adminPassword)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	v := &vmsauth{cmd: cmd, base: "https://" + addr, fa: fa, exited: make(chan error, 1), out: out}
	go func() { v.exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := insecure.Get(v.base + "/healthz"); err == nil {
			res.Body.Close()
			return v, nil
		}
		select {
		case err := <-v.exited:
			return nil, fmt.Errorf("vmsauth exited (%v):\n%s", err, out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	v.stop()
	return nil, fmt.Errorf("vmsauth did not answer:\n%s", out)
}

var insecure = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
}}

// token logs the first admin in through the integration API and learns its
// X-Auth-Permissions from /auth/verify, for the zero-cost upstream to send
// the same bytes.
func (v *vmsauth) token() (token, perms string, err error) {
	res, err := insecure.Post(v.base+"/v1/login_check", "application/json",
		strings.NewReader(`{"username":"admin","password":"`+adminPassword+`"}`))
	if err != nil {
		return "", "", err
	}
	defer res.Body.Close()
	var body struct{ Token string }
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Token == "" {
		return "", "", fmt.Errorf("login: HTTP %d", res.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, v.base+"/auth/verify", nil)
	req.Header.Set("Authorization", "Bearer "+body.Token)
	vr, err := insecure.Do(req)
	if err != nil {
		return "", "", err
	}
	io.Copy(io.Discard, vr.Body)
	vr.Body.Close()
	return body.Token, vr.Header.Get("X-Auth-Permissions"), nil
}

func (v *vmsauth) stop() {
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.exited:
	case <-time.After(30 * time.Second):
		_ = v.cmd.Process.Kill()
	}
}

// proc is a running nginx.
type proc struct {
	cmd    *exec.Cmd
	exited chan error
}

// startNginx runs nginx with conf in dir and waits until it answers at addr
// (host:port or unix:/path).
func startNginx(dir, conf, addr string) (*proc, error) {
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		return nil, err
	}
	for _, loc := range locations {
		if err := os.MkdirAll(filepath.Join(dir, "www", loc), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "www", loc, "ok.txt"), []byte("ok\n"), 0o644); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	nginx, _ := lookPath("nginx")
	cmd := exec.Command(nginx, "-e", "stderr", "-p", dir, "-c", path, "-g", "daemon off;")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	network := "tcp"
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", path
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial(network, addr); err == nil {
			c.Close()
			return p, nil
		}
		select {
		case err := <-p.exited:
			return nil, fmt.Errorf("nginx exited (%v):\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	p.stop()
	return nil, fmt.Errorf("nginx did not listen:\n%s", out.String())
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGQUIT) // graceful
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

var (
	rpsRE    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	countRE  = regexp.MustCompile(`(\d+) requests in`)
	non2xxRE = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	errorsRE = regexp.MustCompile(`Socket errors: .*`)
)

// wrk runs wrk against url for d and returns requests per second and the
// number of requests; any answer other than 2xx, or a socket error, fails
// the run.
func wrk(url, token string, conns int, d time.Duration) (rps float64, n int, err error) {
	path, _ := lookPath("wrk")
	out, err := exec.Command(path, "-t1", fmt.Sprintf("-c%d", conns), "-d"+d.String(),
		"-H", "Authorization: Bearer "+token, url).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	if m := non2xxRE.FindSubmatch(out); m != nil {
		return 0, 0, fmt.Errorf("%s answers that were not 2xx:\n%s", m[1], out)
	}
	if m := errorsRE.Find(out); m != nil {
		return 0, 0, fmt.Errorf("%s\n%s", m, out)
	}
	m, c := rpsRE.FindSubmatch(out), countRE.FindSubmatch(out)
	if m == nil || c == nil {
		return 0, 0, errors.New("no Requests/sec in wrk's output:\n" + string(out))
	}
	n, _ = strconv.Atoi(string(c[1]))
	rps, err = strconv.ParseFloat(string(m[1]), 64)
	return rps, max(n, 1), err
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return exec.LookPath("/usr/sbin/" + name)
}

func nginxVersion() string {
	path, err := lookPath("nginx")
	if err != nil {
		return "?"
	}
	out, _ := exec.Command(path, "-v").CombinedOutput()
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
}
