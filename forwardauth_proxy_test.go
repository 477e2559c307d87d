package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The README's proxy examples, run with the real nginx and Caddy from
// Debian in front of a running vmsauth: each protects two locations, one
// checked over the forward-auth unix socket and one over the HTTPS
// listener, and passes X-Auth-* to a backend that records what it sees.

// needTool finds a proxy binary; missing, the test skips, except under
// CI=true, where .ci/run installs it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	// Debian puts nginx in /usr/sbin, which a user's PATH may lack.
	if path, err := exec.LookPath("/usr/sbin/" + name); err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found; the proxy tests must run in CI (apt-get install %s)", name, name)
	}
	t.Skipf("%s not found; install it (apt-get install %s) to run the proxy tests", name, name)
	return ""
}

// loopbackPort returns a loopback port that was free a moment ago.
func loopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// seen is what the backend behind the proxy was given.
type seen struct {
	mu      sync.Mutex
	headers []http.Header
}

func (s *seen) last() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.headers) == 0 {
		return nil
	}
	return s.headers[len(s.headers)-1]
}

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.headers)
}

// startBackend is the service behind the proxy.
func startBackend(t *testing.T) (string, *seen) {
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.headers = append(s.headers, r.Header.Clone())
		s.mu.Unlock()
		io.WriteString(w, "backend")
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), s
}

// startProxy runs a proxy until the test ends (stopped by its PID) and
// waits until it answers on port.
func startProxy(t *testing.T, port int, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // both stop on SIGINT; nginx "fast shutdown"
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("%s exited:\n%s", name, out.String())
		default:
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not listen on %d:\n%s", name, port, out.String())
}

// openPath lets others traverse dir and its parents up to the system temp
// directory, so an nginx worker running as nobody can reach the socket the
// way www-data reaches /var/lib/vmsauth: through the socket's group.
func openPath(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != filepath.Dir(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
			t.Fatal(err)
		}
	}
}

// countingRelay forwards loopback TCP connections to the unix socket at
// target and counts them, to see whether a proxy keeps its connections to
// vmsauth alive.
func countingRelay(t *testing.T, target string) (addr string, conns func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	n := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			go func() {
				defer c.Close()
				up, err := net.Dial("unix", target)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// proxied is one running vmsauth with its tokens and socket.
type proxied struct {
	base, sock         string // HTTPS listener, forward-auth socket
	admin, cam, forged string // tokens: every permission; none; garbage
}

func startProxied(t *testing.T) *proxied {
	t.Helper()
	dir := t.TempDir()
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password")
	sock := filepath.Join(dir, "forward-auth.sock")
	args := []string{"--captcha=false", "--forward-auth-listen", "unix:" + sock}
	if os.Geteuid() == 0 {
		// As on a box: the proxy's workers are not root and reach the
		// socket through its group (here nobody's nogroup for www-data).
		args = append(args, "--forward-auth-group", "65534")
		openPath(t, filepath.Dir(dir))
	}
	base, _ := startServe(t, getenv, args...)
	// Through the control socket: the first start made the admin.
	if code, out, errOut := cli(t, getenv, "camera-pass\n", "user", "add", "--login", "cam1", "--api", "integration"); code != 0 {
		t.Fatalf("user add: %d %s%s", code, out, errOut)
	}
	return &proxied{
		base: base, sock: sock,
		admin: integrationToken(t, base, "admin", "admin-password"),
		cam:   integrationToken(t, base, "cam1", "camera-pass"),
	}
}

// checkProxy asserts the forward-auth contract through the proxy at url for
// each of its protected prefixes.
func checkProxy(t *testing.T, url string, p *proxied, backend *seen) {
	for _, prefix := range []string{"/unix/", "/https/"} {
		t.Run(strings.Trim(prefix, "/"), func(t *testing.T) {
			do := func(token string, extra ...string) (int, string) {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, url+prefix+"archive", nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				for i := 0; i+1 < len(extra); i += 2 {
					req.Header.Set(extra[i], extra[i+1])
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				return res.StatusCode, string(b)
			}
			t.Run("OK", func(t *testing.T) {
				before := backend.count()
				if code, body := do(p.admin); code != 200 || body != "backend" {
					t.Fatalf("good token: %d %q, want 200 from the backend", code, body)
				}
				h := backend.last()
				if backend.count() != before+1 || h.Get("X-Auth-Login") != "admin" || h.Get("X-Auth-User-Id") != "1" ||
					h.Get("X-Auth-Realm") != "integration" || !strings.Contains(h.Get("X-Auth-Permissions"), "archive-view") {
					t.Fatalf("the backend saw X-Auth-* %q %q %q %q", h.Get("X-Auth-Login"), h.Get("X-Auth-User-Id"),
						h.Get("X-Auth-Realm"), h.Get("X-Auth-Permissions"))
				}
			})
			t.Run("ForgedHeaders", func(t *testing.T) {
				// A client's own X-Auth-* never reach the backend as the user's.
				if code, _ := do(p.admin, "X-Auth-Login", "root", "X-Auth-User-Id", "0"); code != 200 {
					t.Fatalf("good token with forged headers: %d", code)
				}
				if h := backend.last(); h.Get("X-Auth-Login") != "admin" || h.Get("X-Auth-User-Id") != "1" {
					t.Fatalf("the backend saw X-Auth-Login %q, X-Auth-User-Id %q", h.Get("X-Auth-Login"), h.Get("X-Auth-User-Id"))
				}
			})
			if prefix == "/unix/" {
				t.Run("ForgedEmptyHeader", func(t *testing.T) {
					// cam1 has no permissions: verify answers an empty
					// X-Auth-Permissions, which must not leave the client's.
					req, _ := http.NewRequest(http.MethodGet, url+"/open/x", nil)
					req.Header.Set("Authorization", "Bearer "+p.cam)
					req.Header.Set("X-Auth-Permissions", "archive-view")
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					res.Body.Close()
					h := backend.last()
					if res.StatusCode != 200 || h.Get("X-Auth-Login") != "cam1" || h.Get("X-Auth-Permissions") != "" {
						t.Fatalf("%d; the backend saw X-Auth-Login %q, X-Auth-Permissions %q", res.StatusCode,
							h.Get("X-Auth-Login"), h.Get("X-Auth-Permissions"))
					}
				})
			}
			before := backend.count()
			t.Run("ErrNoToken", func(t *testing.T) {
				if code, _ := do(""); code != 401 {
					t.Fatalf("no token: %d, want 401", code)
				}
			})
			t.Run("ErrBadToken", func(t *testing.T) {
				if code, _ := do("not-a-token"); code != 401 {
					t.Fatalf("bad token: %d, want 401", code)
				}
			})
			t.Run("ErrNoPermission", func(t *testing.T) {
				if code, _ := do(p.cam, "X-Auth-Permissions", "archive-view"); code != 403 {
					t.Fatalf("token without archive-view: %d, want 403", code)
				}
			})
			if backend.count() != before {
				t.Errorf("refused requests reached the backend")
			}
		})
	}
}

func TestForwardAuthNginx(t *testing.T) {
	nginx := needTool(t, "nginx")
	p := startProxied(t)
	backendAddr, backend := startBackend(t)
	prefix := t.TempDir()
	port := loopbackPort(t)
	relay, relayed := countingRelay(t, p.sock)
	user := ""
	if os.Geteuid() == 0 {
		user = "user nobody nogroup;"
	}
	// The README's example, twice: over the forward-auth socket (an
	// upstream with keep-alive) and over the HTTPS listener.
	conf := fmt.Sprintf(`%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;

    upstream vmsauth {
        server unix:%[3]s;
        keepalive 32;
    }
    upstream backend { server %[4]s; }
    upstream counted {
        server %[7]s;
        keepalive 32;
    }

    server {
        listen 127.0.0.1:%[5]d;

        location /unix/ {
            auth_request /_vmsauth_unix;
            auth_request_set $auth_user_id $upstream_http_x_auth_user_id;
            auth_request_set $auth_login $upstream_http_x_auth_login;
            auth_request_set $auth_realm $upstream_http_x_auth_realm;
            auth_request_set $auth_permissions $upstream_http_x_auth_permissions;
            proxy_set_header X-Auth-User-Id $auth_user_id;
            proxy_set_header X-Auth-Login $auth_login;
            proxy_set_header X-Auth-Realm $auth_realm;
            proxy_set_header X-Auth-Permissions $auth_permissions;
            proxy_pass http://backend;
        }
        location = /_vmsauth_unix {
            internal;
            proxy_pass http://vmsauth/auth/verify?permission=archive-view;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }

        location /open/ {
            auth_request /_vmsauth_open;
            auth_request_set $auth_login $upstream_http_x_auth_login;
            auth_request_set $auth_permissions $upstream_http_x_auth_permissions;
            proxy_set_header X-Auth-Login $auth_login;
            proxy_set_header X-Auth-Permissions $auth_permissions;
            proxy_pass http://backend;
        }
        location = /_vmsauth_open {
            internal;
            proxy_pass http://vmsauth/auth/verify;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }

        location /counted/ {
            auth_request /_vmsauth_counted;
            proxy_pass http://backend;
        }
        location = /_vmsauth_counted {
            internal;
            proxy_pass http://counted/auth/verify;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }

        location /https/ {
            auth_request /_vmsauth_https;
            auth_request_set $auth_user_id $upstream_http_x_auth_user_id;
            auth_request_set $auth_login $upstream_http_x_auth_login;
            auth_request_set $auth_realm $upstream_http_x_auth_realm;
            auth_request_set $auth_permissions $upstream_http_x_auth_permissions;
            proxy_set_header X-Auth-User-Id $auth_user_id;
            proxy_set_header X-Auth-Login $auth_login;
            proxy_set_header X-Auth-Realm $auth_realm;
            proxy_set_header X-Auth-Permissions $auth_permissions;
            proxy_pass http://backend;
        }
        location = /_vmsauth_https {
            internal;
            proxy_pass %[6]s/auth/verify?permission=archive-view;
            proxy_ssl_verify off;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
    }
}
`, user, prefix, p.sock, backendAddr, port, p.base, relay)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startProxy(t, port, nil, nginx, "-e", "stderr", "-p", prefix, "-c", confPath, "-g", "daemon off;")
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	checkProxy(t, url, p, backend)
	t.Run("KeepAlive", func(t *testing.T) {
		// nginx keeps an upstream connection for the next auth_request
		// only when the answer has no body: one connection for them all.
		c := &http.Client{}
		for i := range 20 {
			if code, body, _ := get(t, c, url+"/counted/x", p.admin); code != 200 || body != "backend" {
				t.Fatalf("request %d: %d %q", i, code, body)
			}
		}
		if n := relayed(); n != 1 {
			t.Fatalf("20 checks took %d connections to vmsauth; want 1, kept alive", n)
		}
	})
}

func TestForwardAuthCaddy(t *testing.T) {
	caddy := needTool(t, "caddy")
	p := startProxied(t)
	backendAddr, backend := startBackend(t)
	home := t.TempDir()
	port := loopbackPort(t)
	conf := fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %[1]s/storage
}

http://127.0.0.1:%[2]d {
	# Without bind, Caddy listens on every address (":PORT"): on a busy
	# machine the port may be taken on another one, and the test must not
	# listen beyond loopback anyway.
	bind 127.0.0.1
	handle /unix/* {
		forward_auth unix/%[3]s {
			uri /auth/verify?permission=archive-view
			copy_headers X-Auth-User-Id X-Auth-Login X-Auth-Realm X-Auth-Permissions
		}
		reverse_proxy %[4]s
	}
	handle /open/* {
		forward_auth unix/%[3]s {
			uri /auth/verify
			copy_headers X-Auth-Login X-Auth-Permissions
		}
		reverse_proxy %[4]s
	}
	handle /https/* {
		forward_auth %[5]s {
			uri /auth/verify?permission=archive-view
			copy_headers X-Auth-User-Id X-Auth-Login X-Auth-Realm X-Auth-Permissions
			transport http {
				tls_insecure_skip_verify
			}
		}
		reverse_proxy %[4]s
	}
}
`, home, port, p.sock, backendAddr, p.base)
	confPath := filepath.Join(home, "Caddyfile")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + home, "XDG_DATA_HOME=" + home + "/data", "XDG_CONFIG_HOME=" + home + "/config"}
	startProxy(t, port, env, caddy, "run", "--config", confPath, "--adapter", "caddyfile")
	checkProxy(t, fmt.Sprintf("http://127.0.0.1:%d", port), p, backend)
}
