package web

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"vmsauth/auth"
)

// The forward-auth listener's own HTTP/1.1 server. nginx asks /auth/verify
// once for every request it protects, so the check's cost per request is
// what the proxy loses; measured through nginx (tools/fwdbench), net/http
// spent 24–36 µs of CPU per check, with Gin or without, against about 5 µs
// for an nginx block that only answers 200: net/http's per-request
// goroutine for background reads, its read deadline per request (runtime
// timer locks), its Request, Header map and context, and the garbage they
// make. This server spends 10–17 µs, most of it in the system calls and
// the Go scheduler's wake-ups that any goroutine per connection pays. It
// reads each kept-alive connection in one goroutine, with one buffer,
// and answers the one request that matters, a GET /auth/verify that passes,
// by appending bytes; every other well-formed request goes to the Gin
// router (ForwardAuth.ServeHTTP), so refusals, /healthz, 404 and 405 stay
// the very answers of the HTTPS listener. It parses strictly and small:
// anything it does not understand is a plain 400 and the connection closed.

// Limits of the forward-auth server.
const (
	// faMaxHeader bounds a request's header block (request line included),
	// as MaxHeaderBytes did; a larger one is answered 431 and closed.
	faMaxHeader = 16 << 10
	// faMaxFields bounds the number of header lines of a request.
	faMaxFields = 100
	// faHeaderTimeout is how long a request may take to arrive once its
	// first byte did (slowloris), as ReadHeaderTimeout did.
	faHeaderTimeout = 5 * time.Second
	// faWriteTimeout bounds a write to a peer that does not read.
	faWriteTimeout = 30 * time.Second
	// faDeadlineSlack is how stale a deadline may grow before it is set
	// again: setting one per request took a runtime timer lock per check,
	// so an idle connection is closed after forwardAuthIdle minus at most
	// this, and a write waits at least faWriteTimeout minus this.
	faDeadlineSlack = 10 * time.Second
	// faFlushAt is when answers to pipelined requests are written without
	// waiting for the end of the pipeline.
	faFlushAt = 4 << 10
)

// ForwardAuth is the handler of the forward-auth listener. As an
// http.Handler it is the Gin router of /auth/verify and /healthz;
// ForwardAuthServer also answers a passing check itself, without it.
type ForwardAuth struct {
	s      *server
	router http.Handler
}

// ServeHTTP serves r with the Gin router.
func (f *ForwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.router.ServeHTTP(w, r) }

// ForwardAuthServer serves a ForwardAuth on plain HTTP/1.1 connections.
type ForwardAuthServer struct {
	h *ForwardAuth

	ctx    context.Context // of every request; ends when the server closes
	cancel context.CancelFunc

	closing atomic.Bool
	mu      sync.Mutex
	lns     map[net.Listener]struct{}
	conns   map[*faConn]struct{}
}

// NewForwardAuthServer returns the server of the forward-auth listener
// (--forward-auth-listen) for h (Handlers.ForwardAuth): plain HTTP, the
// limits above and a long idle time. Only the proxy on the box connects,
// with a pool of kept-alive connections, so limits on connections per
// address do not belong here.
func NewForwardAuthServer(h *ForwardAuth) *ForwardAuthServer {
	ctx, cancel := context.WithCancel(context.Background())
	return &ForwardAuthServer{h: h, ctx: ctx, cancel: cancel,
		lns: map[net.Listener]struct{}{}, conns: map[*faConn]struct{}{}}
}

// Serve accepts connections on ln until Shutdown or Close, then returns
// http.ErrServerClosed, as http.Server does.
func (s *ForwardAuthServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait, as net/http
			// does, rather than spin or stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.h.s.log.Warn("forward auth: accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		fc := &faConn{srv: s, c: c}
		fc.idle.Store(true)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			return http.ErrServerClosed
		}
		s.conns[fc] = struct{}{}
		s.mu.Unlock()
		go fc.serve()
	}
}

// Shutdown stops accepting, closes idle connections, lets each request in
// progress finish and closes its connection after it, and waits for every
// connection to end or ctx to.
func (s *ForwardAuthServer) Shutdown(ctx context.Context) error {
	s.stopListening()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		for c := range s.conns {
			if c.idle.Load() {
				c.c.Close()
			}
		}
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			s.cancel()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *ForwardAuthServer) Close() error {
	s.stopListening()
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.c.Close()
	}
	s.mu.Unlock()
	return nil
}

func (s *ForwardAuthServer) stopListening() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	for ln := range s.lns {
		ln.Close() // a unix listener removes its socket
		delete(s.lns, ln)
	}
}

// faConn is one connection of the forward-auth server.
type faConn struct {
	srv  *ForwardAuthServer
	c    net.Conn
	idle atomic.Bool // waiting for the first byte of a request

	buf  []byte // read, not yet parsed: buf[r:]
	r    int
	out  []byte // answers not yet written
	peer string // RemoteAddr of a request given to the router

	readDL, writeDL time.Time // deadlines as last set
	// clock is the time of the last read or answer. time.Now costs 200–
	// 300 ns on the build machine's VM (no vDSO clock), four times a check
	// at first: like nginx, the server reads the clock once when a read
	// returns and once when an answer is made, and uses those for
	// deadlines, Date and durations.
	clock   time.Time
	dateSec int64  // the Unix second that date is of
	date    []byte // "Date: ...\r\n"

	hdr     []byte // userHeader's last answer, for hdrUser and hdrAPI
	hdrUser *auth.User
	hdrAPI  auth.API
	perm    string // the last ?permission= checked
}

// faRequest is what the server reads of a request: slices of the
// connection's buffer, valid until the next read.
type faRequest struct {
	method, target, proto []byte
	header                []byte // the header lines, each ending in CRLF
	host, authorization   []byte
	hosts, authorizations int
	length                []byte // Content-Length
	lengths               int
	close                 bool // answer, then close the connection
}

// errFaTooLarge is a header block over faMaxHeader.
var errFaTooLarge = errors.New("request header too large")

func (fc *faConn) serve() {
	s := fc.srv
	defer func() {
		if v := recover(); v != nil {
			s.h.s.log.Error("panic serving request", "listener", "forward-auth", "panic", v)
		}
		fc.c.Close()
		s.mu.Lock()
		delete(s.conns, fc)
		s.mu.Unlock()
	}()
	fc.buf = make([]byte, 0, 2048)
	for {
		hdr, err := fc.readHeader()
		if err != nil {
			switch {
			case errors.Is(err, errFaTooLarge):
				fc.plain(http.StatusRequestHeaderFieldsTooLarge)
			case errors.Is(err, errFaBad):
				fc.plain(http.StatusBadRequest)
			}
			// A read error (timeout, a peer gone midway) ends the
			// connection quietly: the peer is not there to answer.
			fc.flush()
			return
		}
		fc.idle.Store(false)
		var req faRequest
		if err := parseFaRequest(hdr, &req); err != nil {
			fc.plain(http.StatusBadRequest)
			fc.flush()
			return
		}
		keep := fc.answer(&req)
		// The answer is written when no further request is waiting, so
		// that a pipeline's answers leave in one write.
		if !keep || fc.r == len(fc.buf) || len(fc.out) >= faFlushAt || s.closing.Load() {
			if !fc.flush() || !keep {
				return
			}
		}
		if s.closing.Load() {
			return
		}
	}
}

// errFaBad is a request the server refuses to read further.
var errFaBad = errors.New("malformed request")

// readHeader returns the next request's header block (up to and including
// the empty line), reading as needed. Every line must end in CRLF.
func (fc *faConn) readHeader() ([]byte, error) {
	scanned := fc.r // lines before this end in CRLF and are not empty
	var started time.Time
	for {
		// Look for the empty line that ends the block.
		for {
			i := bytes.IndexByte(fc.buf[scanned:], '\n')
			if i < 0 {
				break
			}
			end := scanned + i
			if end == fc.r || fc.buf[end-1] != '\r' {
				return nil, errFaBad // a bare LF
			}
			if end-1 == scanned && scanned > fc.r {
				// An empty line after the request line: the block's end.
				hdr := fc.buf[fc.r : end+1]
				fc.r = end + 1
				if len(hdr) > faMaxHeader {
					return nil, errFaTooLarge
				}
				return hdr, nil
			}
			if end-1 == scanned {
				return nil, errFaBad // an empty line before the request line
			}
			scanned = end + 1
		}
		if len(fc.buf)-fc.r > faMaxHeader {
			return nil, errFaTooLarge
		}
		// More is needed. Answers waiting leave first: the peer may wait
		// for them before it sends more.
		if len(fc.out) > 0 && !fc.flush() {
			return nil, net.ErrClosed
		}
		if fc.r == len(fc.buf) {
			// Nothing of the next request yet: the connection is idle.
			fc.buf, scanned, fc.r = fc.buf[:0], 0, 0
			fc.idle.Store(true)
			if fc.srv.closing.Load() {
				return nil, net.ErrClosed
			}
			if fc.clock.IsZero() {
				fc.clock = time.Now()
			}
			if want := fc.clock.Add(forwardAuthIdle); fc.readDL.Before(want.Add(-faDeadlineSlack)) {
				fc.readDL = want
				fc.c.SetReadDeadline(want)
			}
		} else {
			// Part of a request is here: the rest must follow soon.
			if started.IsZero() {
				started = fc.clock // when this request's first bytes came
				if want := started.Add(faHeaderTimeout); fc.readDL.After(want) {
					fc.readDL = want
					fc.c.SetReadDeadline(want)
				}
			}
			if fc.r > 0 {
				// Keep the partial request at the buffer's start.
				n := copy(fc.buf, fc.buf[fc.r:])
				scanned -= fc.r
				fc.buf, fc.r = fc.buf[:n], 0
			}
		}
		if cap(fc.buf)-len(fc.buf) < 512 {
			fc.buf = slices.Grow(fc.buf, min(cap(fc.buf), faMaxHeader+1024))
		}
		n, err := fc.c.Read(fc.buf[len(fc.buf):cap(fc.buf)])
		fc.buf = fc.buf[:len(fc.buf)+n]
		if n > 0 {
			fc.idle.Store(false)
			fc.clock = time.Now()
		}
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

// parseFaRequest parses a header block strictly: "METHOD SP target SP
// HTTP/1.x", then "name: value" lines of valid bytes, no obsolete line
// folding, one Host. Any Transfer-Encoding is refused: no route here reads
// a body, and one the server did not read would be taken for the next
// request; after a Content-Length body the connection is closed for the
// same reason.
func parseFaRequest(hdr []byte, req *faRequest) error {
	line, rest, _ := bytes.Cut(hdr, []byte("\r\n"))
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || !isToken(method) || len(target) == 0 || target[0] != '/' || !validTarget(target) {
		return errFaBad
	}
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		req.close = true
	default:
		return errFaBad
	}
	req.method, req.target, req.proto, req.header = method, target, proto, rest
	fields := 0
	for len(rest) > 2 { // the last line is the empty one
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		fields++
		if fields > faMaxFields {
			return errFaBad
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || len(name) == 0 || !isToken(name) {
			return errFaBad // also a folded line, which starts with a space
		}
		value = bytes.Trim(value, " \t")
		if !validValue(value) {
			return errFaBad
		}
		switch {
		case asciiEqualFold(name, "host"):
			req.host = value
			req.hosts++
		case asciiEqualFold(name, "authorization"):
			req.authorization = value
			req.authorizations++
		case asciiEqualFold(name, "content-length"):
			// No route reads a body: a request with one is answered
			// (a misdirected POST its 404 or 405, as before) and the
			// connection closed, the body unread.
			if len(value) == 0 || len(value) > 18 || !allDigits(value) || req.lengths > 0 && !bytes.Equal(value, req.length) {
				return errFaBad
			}
			req.length = value
			req.lengths++
			if strings.Trim(string(value), "0") != "" {
				req.close = true
			}
		case asciiEqualFold(name, "transfer-encoding"):
			return errFaBad
		case asciiEqualFold(name, "connection"):
			for t := range strings.SplitSeq(string(value), ",") {
				if strings.EqualFold(strings.TrimSpace(t), "close") {
					req.close = true
				}
			}
		}
	}
	// HTTP/1.1 requires exactly one Host (RFC 9112 §3.2), as net/http does.
	if req.hosts > 1 || (req.hosts == 0 && string(proto) == "HTTP/1.1") || !validHost(req.host) {
		return errFaBad
	}
	return nil
}

// answer answers req into fc.out and tells whether the connection is kept.
func (fc *faConn) answer(req *faRequest) (keep bool) {
	if string(req.method) == http.MethodGet && fc.verify(req) {
		return !req.close
	}
	routed := fc.route(req)
	return routed && !req.close
}

// verify answers a GET /auth/verify whose token passes, and reports false,
// having written nothing, for anything else: a refusal goes to the router,
// which checks again and answers in the API's envelope.
func (fc *faConn) verify(req *faRequest) bool {
	path, query, _ := bytes.Cut(req.target, []byte("?"))
	if string(path) != "/auth/verify" || req.authorizations != 1 {
		return false
	}
	api, permission, ok := plainVerifyQuery(query, fc.perm)
	if !ok {
		return false
	}
	fc.perm = permission
	s := fc.srv.h.s
	start := fc.clock
	sess, u, err := s.svc.Verify(fc.srv.ctx, bearerToken(string(req.authorization)), api)
	if err != nil || (permission != "" && !u.Has(permission)) {
		return false
	}
	userHeader := fc.userHeader(u, sess.API)
	if userHeader == nil {
		return false // a value net/http would rewrite: let it
	}
	end := time.Now()
	fc.clock = end
	o := append(fc.out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: application/json; charset=utf-8\r\n"...)
	o = append(o, fc.dateLine(end)...)
	if req.close {
		o = append(o, "Connection: close\r\n"...)
	}
	o = append(o, userHeader...)
	fc.out = append(o, "\r\n"...)
	took := end.Sub(start)
	s.metrics.request(http.MethodGet, "/auth/verify", http.StatusOK, took)
	if s.log.Enabled(fc.srv.ctx, slog.LevelDebug) {
		s.log.Debug("request", "listener", "forward-auth", "method", http.MethodGet, "path", "/auth/verify",
			"status", http.StatusOK, "peer", fc.peerName(), "duration", took)
	}
	return true
}

// userHeader returns the X-Auth-* lines of u's 200 for a token of api, or
// nil when a value holds a control character. A connection keeps the last
// one made: the store shares one *auth.User between checks and never
// changes it (a change replaces it), and a proxy's connection mostly
// checks the same few users.
func (fc *faConn) userHeader(u *auth.User, api auth.API) []byte {
	if u == fc.hdrUser && api == fc.hdrAPI {
		return fc.hdr
	}
	fc.hdrUser = nil
	if !safeValue(u.Login) || !safeValue(string(api)) {
		return nil
	}
	o := append(fc.hdr[:0], "X-Auth-Login: "...)
	o = append(o, u.Login...)
	o = append(o, "\r\nX-Auth-Permissions: "...)
	for i, p := range u.Permissions {
		if !safeValue(p) {
			return nil
		}
		if i > 0 {
			o = append(o, ',')
		}
		o = append(o, p...)
	}
	o = append(o, "\r\nX-Auth-Realm: "...)
	o = append(o, api...)
	o = append(o, "\r\nX-Auth-User-Id: "...)
	o = strconv.AppendInt(o, u.ID, 10)
	fc.hdr, fc.hdrUser, fc.hdrAPI = append(o, "\r\n"...), u, api
	return fc.hdr
}

// plainVerifyQuery reads a query of at most one api= and one permission=
// whose values need no decoding, as verifyParams would; ok is false for
// any other query, which the router then judges.
// last is the permission of the connection's last check, whose string is
// reused when the same comes again.
func plainVerifyQuery(q []byte, last string) (api auth.API, permission string, ok bool) {
	var sawAPI, sawPermission bool
	for len(q) > 0 {
		var pair []byte
		pair, q, _ = bytes.Cut(q, []byte("&"))
		k, v, _ := bytes.Cut(pair, []byte("="))
		if len(v) == 0 || !plainQueryValue(v) {
			return "", "", false
		}
		switch {
		case string(k) == "api" && !sawAPI:
			a, known := auth.ParseAPI(string(v))
			if !known {
				return "", "", false
			}
			api, sawAPI = a, true
		case string(k) == "permission" && !sawPermission:
			permission, sawPermission = last, true
			if string(v) != last {
				permission = string(v)
			}
		default:
			return "", "", false
		}
	}
	return api, permission, true
}

// plainQueryValue: only unreserved characters (RFC 3986), which mean
// themselves in a query.
func plainQueryValue(v []byte) bool {
	for _, b := range v {
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.' || b == '_' || b == '~') {
			return false
		}
	}
	return true
}

// route answers req with the Gin router, as net/http would have, and
// reports whether the connection may be kept: only after a GET of
// /auth/verify or /healthz.
func (fc *faConn) route(req *faRequest) bool {
	u, err := url.ParseRequestURI(string(req.target))
	if err != nil {
		fc.plain(http.StatusBadRequest)
		return false
	}
	h := make(http.Header)
	for rest := req.header; len(rest) > 2; {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, _ := bytes.Cut(l, []byte(":"))
		k := http.CanonicalHeaderKey(string(name))
		h[k] = append(h[k], string(bytes.Trim(value, " \t")))
	}
	r := &http.Request{
		Method: string(req.method), URL: u, RequestURI: string(req.target),
		Proto: string(req.proto), ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, Host: string(req.host), RemoteAddr: fc.remoteAddr(),
	}
	if string(req.proto) == "HTTP/1.0" {
		r.ProtoMinor = 0
	}
	r = r.WithContext(fc.srv.ctx)
	w := &faRecorder{header: http.Header{}}
	fc.srv.h.ServeHTTP(w, r)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	keep := r.Method == http.MethodGet && (u.Path == "/auth/verify" || u.Path == "/healthz")
	fc.writeAnswer(r.Method, w, req.close || !keep)
	return keep
}

// faRecorder keeps the router's answer, for writeAnswer.
type faRecorder struct {
	header http.Header
	status int
	body   []byte
}

func (w *faRecorder) Header() http.Header { return w.header }

func (w *faRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *faRecorder) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, b...)
	return len(b), nil
}

// writeAnswer appends w's answer as net/http would send it: its headers
// in order with Content-Length and Date, values with a CR or LF made
// spaces, no body for HEAD.
func (fc *faConn) writeAnswer(method string, w *faRecorder, closing bool) {
	o := append(fc.out, "HTTP/1.1 "...)
	o = strconv.AppendInt(o, int64(w.status), 10)
	o = append(o, ' ')
	if t := http.StatusText(w.status); t != "" {
		o = append(o, t...)
	} else {
		o = append(o, "status code "...)
		o = strconv.AppendInt(o, int64(w.status), 10)
	}
	o = append(o, "\r\n"...)
	h := w.header
	delete(h, "Content-Length")
	delete(h, "Date")
	delete(h, "Connection")
	delete(h, "Transfer-Encoding")
	if len(w.body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", http.DetectContentType(w.body))
	}
	bodyless := w.status == http.StatusNoContent || w.status == http.StatusNotModified || w.status < 200
	if !bodyless {
		h.Set("Content-Length", strconv.Itoa(len(w.body)))
	}
	if closing {
		h.Set("Connection", "close")
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		if isToken([]byte(k)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	fc.clock = time.Now()
	o = append(o, fc.dateLine(fc.clock)...)
	for _, k := range keys {
		for _, v := range h[k] {
			o = append(o, k...)
			o = append(o, ": "...)
			o = append(o, strings.Map(func(r rune) rune {
				if r == '\r' || r == '\n' || r == 0 {
					return ' '
				}
				return r
			}, strings.TrimSpace(v))...)
			o = append(o, "\r\n"...)
		}
	}
	o = append(o, "\r\n"...)
	if method != http.MethodHead && !bodyless {
		o = append(o, w.body...)
	}
	fc.out = o
}

// plain appends a text/plain answer of status, closing the connection, for
// a request the server will not read: as net/http answers one.
func (fc *faConn) plain(status int) {
	text := strconv.Itoa(status) + " " + http.StatusText(status)
	o := append(fc.out, "HTTP/1.1 "+text+"\r\nConnection: close\r\nContent-Length: "...)
	o = strconv.AppendInt(o, int64(len(text)), 10)
	o = append(o, "\r\nContent-Type: text/plain; charset=utf-8\r\n"...)
	o = append(o, fc.dateLine(time.Now())...)
	o = append(o, "\r\n"...)
	fc.out = append(o, text...)
	s := fc.srv.h.s
	s.metrics.request("other", "unmatched", status, 0)
	if s.log.Enabled(fc.srv.ctx, slog.LevelDebug) {
		s.log.Debug("request refused", "listener", "forward-auth", "status", status, "peer", fc.peerName())
	}
}

// flush writes the waiting answers and reports whether that worked.
func (fc *faConn) flush() bool {
	if len(fc.out) == 0 {
		return true
	}
	if fc.clock.IsZero() {
		fc.clock = time.Now()
	}
	if want := fc.clock.Add(faWriteTimeout); fc.writeDL.Before(want.Add(-faDeadlineSlack)) {
		fc.writeDL = want
		fc.c.SetWriteDeadline(want)
	}
	_, err := fc.c.Write(fc.out)
	fc.out = fc.out[:0]
	return err == nil
}

// dateLine is the Date header of t's second, made once a second.
func (fc *faConn) dateLine(t time.Time) []byte {
	if sec := t.Unix(); sec != fc.dateSec || fc.date == nil {
		fc.dateSec = sec
		fc.date = append(append(append(fc.date[:0], "Date: "...), t.UTC().Format(http.TimeFormat)...), "\r\n"...)
	}
	return fc.date
}

func (fc *faConn) remoteAddr() string {
	if fc.peer == "" {
		if a := fc.c.RemoteAddr(); a != nil {
			fc.peer = a.String()
		}
	}
	return fc.peer
}

// peerName names the peer in a log line, as logForwardAuth does.
func (fc *faConn) peerName() string {
	if p := fc.remoteAddr(); p != "" && p != "@" {
		return p
	}
	return "unix socket"
}

// isToken: the characters of a method or a header name (RFC 9110 §5.6.2).
func isToken(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return len(b) > 0
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validTarget: an origin-form target of visible ASCII (RFC 9112 §3.2.1).
func validTarget(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// validValue: a field value of visible characters, spaces and tabs.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost: the characters of a host and port, bracketed IPv6 included.
func validHost(b []byte) bool {
	for _, c := range b {
		if !(c < 0x80 && tokenChar[c] || c == ':' || c == '[' || c == ']') || c == '`' || c == '|' || c == '^' || c == '#' {
			return false
		}
	}
	return true
}

// safeValue: a header value the server may write as it is.
func safeValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
