// Package etcd is a small client for etcd's v3 JSON API: the gateway every
// etcd since 3.4 serves under /v3/ on its client port (kv/range, kv/txn,
// watch, lease/*, auth/authenticate, maintenance/status, cluster/member/
// list), spoken over net/http. It owns the wire format (base64 keys and
// values, int64 fields as strings), the rotation over a cluster's endpoints
// with short per-request timeouts, auth token renewal, the streaming watch
// and the mapping of etcd's errors to typed ones. It knows nothing of
// vmsauth: no keys, no rules, no retries of writes on the caller's behalf.
//
// Why not go.etcd.io/etcd/client/v3: it pulls gRPC, protobuf and zap into
// the binary (9.2 MB more for vmsauth's release binary, which must stay
// under 12 MB) and its packages' initialisation costs about 9 MB of
// resident memory on every box, even one that never joins a site. This
// package adds nothing to a binary that links it without calling it, about
// 112 kB with every call in use (net/http, crypto/tls and encoding/json are
// in the binary already), and has no start-up work.
//
// Failures: a read (Range, Status, a lease keep-alive...) moves on to the
// next endpoint on a connection error, a timeout or an "unavailable"
// answer, until every endpoint was tried once or the caller's context ends,
// then returns an error matching ErrUnavailable. A write moves on only when
// it certainly was not applied (the connection was refused, or etcd refused
// it before raft, as with no leader). A write that was sent and timed out
// returns ErrMaybeApplied at once, with no second try: only the caller knows
// whether its write is idempotent (a Txn guarded by a revision compare is).
// Either way the next request starts at the next endpoint.
package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout is the per-request timeout when Config.Timeout is zero: an
// election after a leader's death takes about 1 to 2 s with etcd's default
// election timeout, and a request to a dead or frozen member should give up
// in about that time and move on.
const DefaultTimeout = 2 * time.Second

// Config says where the cluster is and how to reach it.
type Config struct {
	// Endpoints are the members' client URLs, "https://10.0.0.5:2379".
	Endpoints []string
	// Timeout bounds each request to one endpoint (DefaultTimeout if zero),
	// and a watch until etcd confirms it is created.
	Timeout time.Duration
	// TLS is used for https endpoints; see TLSConfig.
	TLS *tls.Config
	// Username and Password, when Username is set, are sent to
	// /v3/auth/authenticate for a token before the first request, and again
	// once when etcd refuses the token (expired, or the auth store changed).
	Username string
	Password string
}

// Client talks to one etcd cluster. It is safe for concurrent use.
type Client struct {
	eps     []endpoint
	timeout time.Duration
	user    string
	pass    string
	cur     atomic.Int64 // the endpoint the next request starts at

	mu     sync.Mutex // guards token and authed
	token  string
	authed bool         // token holds what the last authentication gave
	auths  atomic.Int64 // authentications made, for tests
}

type endpoint struct {
	url string
	hc  *http.Client
}

// New checks the configuration and makes a client. It does not connect.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	c := &Client{timeout: cfg.Timeout, user: cfg.Username, pass: cfg.Password}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	for _, raw := range cfg.Endpoints {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("etcd: endpoint %q: want http://host:port or https://host:port", raw)
		}
		if u.Scheme == "https" && cfg.TLS == nil {
			return nil, fmt.Errorf("etcd: endpoint %q is https but no TLS configuration was given", raw)
		}
		// One transport per endpoint keeps its idle connections apart, so
		// forgetting a dead member's connections touches no other.
		tr := &http.Transport{
			// TCP keep-alive probes find a member whose machine died or
			// dropped off the network in about 11 s, so a watch on it
			// breaks instead of waiting forever.
			DialContext: (&net.Dialer{Timeout: c.timeout, KeepAliveConfig: net.KeepAliveConfig{
				Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3}}).DialContext,
			TLSClientConfig:     cfg.TLS,
			TLSHandshakeTimeout: c.timeout,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}
		c.eps = append(c.eps, endpoint{url: u.Scheme + "://" + u.Host, hc: &http.Client{Transport: tr}})
	}
	return c, nil
}

// Endpoints returns the endpoints in their configured order.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.eps))
	for i, e := range c.eps {
		out[i] = e.url
	}
	return out
}

// Close drops the idle connections. Watchers are closed by their owners.
func (c *Client) Close() {
	for _, e := range c.eps {
		e.hc.CloseIdleConnections()
	}
}

// TLSConfig reads a CA bundle (to check the members' certificates; the
// system's roots when caFile is empty) and, when certFile is set, a client
// certificate and key for etcd's --client-cert-auth.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("etcd: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd: CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("etcd: a client certificate needs both its certificate and key files")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// call sends one unary request to the cluster: it authenticates first when
// a user is configured, renews a refused token once, and rotates endpoints
// as the package comment says. write marks a request that changes state.
func (c *Client) call(ctx context.Context, path string, in, out any, write bool) error {
	return c.callOn(ctx, path, in, out, write, -1)
}

// callOn is call on the endpoint at index only, or on all when only < 0.
func (c *Client) callOn(ctx context.Context, path string, in, out any, write bool, only int) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	tok, err := c.authToken(ctx)
	if err != nil {
		return err
	}
	err = c.rotate(ctx, path, body, tok, out, write, only)
	var e *Error
	if !errors.As(err, &e) || !e.is(errTokenRefused) {
		return err
	}
	if c.user == "" {
		e.Kinds = []error{ErrAuth} // auth is on and no user was configured
		return err
	}
	// The token expired (simple tokens live --auth-token-ttl, 300 s by
	// default, after their last use) or the auth store changed. etcd
	// checks the token before it proposes anything, so the request was
	// not applied and sending it again is safe.
	if tok, err = c.renew(ctx, tok); err != nil {
		return err
	}
	err = c.rotate(ctx, path, body, tok, out, write, only)
	if errors.As(err, &e) && e.is(errTokenRefused) {
		e.Kinds = []error{ErrAuth}
	}
	return err
}

// rotate tries the endpoints in turn, starting at the current one (or only
// the one at index only, when only >= 0).
func (c *Client) rotate(ctx context.Context, path string, body []byte, tok string, out any, write bool, only int) error {
	if only >= 0 {
		return c.once(ctx, c.eps[only], path, body, tok, out, write)
	}
	n := len(c.eps)
	start := int(c.cur.Load())
	var last error
	for i := 0; i < n; i++ {
		idx := (start + i) % n
		err := c.once(ctx, c.eps[idx], path, body, tok, out, write)
		if err == nil {
			return nil
		}
		var e *Error
		if !errors.As(err, &e) || !e.is(ErrUnavailable) && !e.is(ErrMaybeApplied) {
			return err // etcd answered: a compare, auth or argument failure
		}
		// This endpoint failed: the next request (and this one, if it may
		// go on) starts at the next. A concurrent request may have moved
		// on already; losing that race only costs it one more try.
		c.cur.CompareAndSwap(int64(idx), int64((idx+1)%n))
		if e.is(ErrMaybeApplied) || ctx.Err() != nil {
			return err
		}
		last = err
	}
	return last
}

// once sends one request to one endpoint.
func (c *Client) once(ctx context.Context, ep endpoint, path string, body []byte, tok string, out any, write bool) error {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// The request may have been applied only if etcd got all of it: until
	// the body is written, a failure is as good as a refusal.
	var sent atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { sent.Store(i.Err == nil) },
	})
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", tok)
	}
	resp, err := ep.hc.Do(req)
	if err != nil {
		return transportError(ctx, ep.url, err, write && sent.Load())
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return transportError(ctx, ep.url, err, write)
	}
	if resp.StatusCode != http.StatusOK {
		return answerError(ep.url, resp.StatusCode, data, write)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &Error{Endpoint: ep.url, Err: fmt.Errorf("decoding %s answer: %w", path, err)}
	}
	return nil
}

// transportError classifies a failure with no answer from etcd.
func transportError(ctx context.Context, ep string, err error, maybeApplied bool) error {
	e := &Error{Endpoint: ep, Err: err, Kinds: unanswered(maybeApplied)}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		e.Kinds = append(e.Kinds, ErrTimeout)
	}
	return e
}

// answerError reads etcd's JSON error, {"error":"...","code":N,"message":"..."}.
func answerError(ep string, status int, data []byte, write bool) error {
	var ge struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Code    int    `json:"code"`
	}
	if json.Unmarshal(data, &ge) != nil || ge.Error == "" && ge.Message == "" {
		// Not etcd's gateway (a proxy, or an etcd older than 3.4 answering
		// 404 under /v3/).
		e := &Error{Endpoint: ep, Message: fmt.Sprintf("HTTP %d: %.80q", status, data)}
		if status >= 500 {
			e.Kinds = unanswered(write)
		}
		return e
	}
	msg := ge.Message
	if msg == "" {
		msg = ge.Error
	}
	return classify(ep, ge.Code, msg, write)
}

// authToken returns the current token, authenticating first if none.
func (c *Client) authToken(ctx context.Context) (string, error) {
	if c.user == "" {
		return "", nil
	}
	c.mu.Lock()
	tok, authed := c.token, c.authed
	c.mu.Unlock()
	if authed {
		return tok, nil
	}
	return c.renew(ctx, "")
}

// renew replaces a refused token. Concurrent callers that saw the same
// refused token wait for one authentication and share its token.
func (c *Client) renew(ctx context.Context, refused string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.authed && c.token != refused {
		return c.token, nil
	}
	in := struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}{c.user, c.pass}
	body, err := json.Marshal(in)
	if err != nil {
		return "", err
	}
	var out struct {
		Token string `json:"token"`
	}
	c.auths.Add(1)
	err = c.rotate(ctx, "/v3/auth/authenticate", body, "", &out, false, -1)
	var e *Error
	if errors.As(err, &e) && strings.Contains(e.Message, "authentication is not enabled") {
		// A user is configured before the cluster's auth is enabled:
		// requests go without a token until etcd asks for one.
		err, out.Token = nil, ""
	}
	if err != nil {
		return "", err
	}
	c.token, c.authed = out.Token, true
	return c.token, nil
}
