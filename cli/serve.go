package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"vmsauth/auth"
	"vmsauth/captcha"
	"vmsauth/etcdstore"
	"vmsauth/internal/atomicfile"
	"vmsauth/store"
	"vmsauth/web"
)

// shutdownGrace is how long in-flight requests get after SIGTERM; well
// inside systemd's 90 s stop timeout.
const shutdownGrace = 20 * time.Second

// databaseFile is the bbolt file inside the data directory.
const databaseFile = "vmsauth.db"

// captchaSecretFile holds the secret that seals captcha keys.
const captchaSecretFile = "captcha-secret"

// initialPasswordFile keeps the generated first admin password for an
// installer who missed it on the console.
const initialPasswordFile = "initial-admin-password"

// serve runs the service until ctx ends or something fatal happens.
func serve(ctx context.Context, env Env, args []string) error {
	cfg, err := serveConfig(env, args)
	if err != nil || cfg == nil {
		return err
	}
	a, err := newApp(ctx, env, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}

// serveConfig parses and checks serve's flags. With --print-config it
// prints the configuration and returns nil.
func serveConfig(env Env, args []string) (*config, error) {
	var cfg config
	fs := serveFlags(&cfg)
	sources, err := parseFlagSources(fs, args, env.Getenv, env.Stderr)
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.PrintConfig {
		printConfig(fs, sources, env.Getenv, env.Stdout)
		return nil, nil
	}
	return &cfg, nil
}

// app is the running service: the database, the rules on it, the
// background work and the listeners. newApp opens it all (so the listeners'
// addresses are known as it returns), Run serves until the end, Close
// releases everything in the reverse order of newApp. Tests start one on
// port 0 and ask it for its URL.
type app struct {
	log *slog.Logger
	db  Backend

	checkStart time.Time
	checkDone  <-chan error
	checked    chan struct{}
	fatal      *fatalStop
	outage     everyMinute // the background's WARN lines while etcd is unavailable

	servers []stopper
	serve   []func() error // one per server, run by Run
	url     string
	faURL   string // "": no forward-auth listener

	// closers undo newApp's steps; Close runs them last first.
	closers []func()
}

// newApp opens the service cfg describes. On error, what it had opened is
// closed again.
func newApp(ctx context.Context, env Env, cfg *config) (_ *app, err error) {
	level, _ := cfg.level()
	a := &app{log: slog.New(slog.NewTextHandler(env.Stdout, &slog.HandlerOptions{Level: level})), fatal: newFatal()}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	svc, err := a.openData(ctx, env, cfg)
	if err != nil {
		return nil, err
	}
	auditor, err := a.startBackground(cfg, svc)
	if err != nil {
		return nil, err
	}
	hs, err := a.handlers(cfg, svc, auditor)
	if err != nil {
		return nil, err
	}
	if err := a.listen(cfg, hs); err != nil {
		return nil, err
	}
	return a, nil
}

// openData opens the database with the rules on it, makes the first admin
// on a new one, and starts the check of its every page.
func (a *app) openData(ctx context.Context, env Env, cfg *config) (*auth.Service, error) {
	// The hashing pool stays as wide as the cores, and the scheduler gets one
	// P more: with every core hashing during a login flood, token checks
	// still find a free P instead of waiting for bcrypt to be preempted. It
	// is put back on Close so that serving twice in one process (the tests)
	// does not add a P each time.
	workers := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(workers + 1)
	a.onClose(func() { runtime.GOMAXPROCS(workers) })
	acfg := cfg.authConfig()
	acfg.HashWorkers = workers
	acfg.Logger = a.log
	// Open refuses a file whose meta pages or schema are damaged. The walk
	// of every page takes longer on a large file than a start may, so it
	// runs beside the start: it holds off every write until it has passed,
	// /healthz answers 503 meanwhile, and a damaged file stops serve.
	var (
		db  Backend
		svc *auth.Service
		err error
	)
	if cfg.Etcd != "" {
		db, svc, err = openSite(cfg, env.Getenv, acfg)
		if err == nil {
			a.log.Info("serving a site from etcd", "etcd", cfg.Etcd, "prefix", cfg.EtcdPrefix)
		}
	} else {
		db, svc, err = openService(cfg.Data, acfg, store.Options{CheckLater: true})
		if err == nil {
			if left, e := leaveSite(cfg.Data); e != nil {
				err = e
			} else if left {
				a.log.Warn("this box served a site from etcd before; it now serves from its own file, which holds what it held before it joined")
			}
		}
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		return nil, err
	}
	a.db = db
	a.onClose(func() { db.Close() })
	// Rehashes that logins started finish before the database closes.
	a.onClose(svc.Wait)

	// A site whose init has not finished is half there: not served.
	start := func() error {
		if err := checkSiteInit(ctx, db); err != nil {
			return err
		}
		if err := bootstrapAdmin(ctx, db, svc, cfg.Data, env.Getenv, env.Stdout, a.log); err != nil {
			return fmt.Errorf("creating the first admin: %w", err)
		}
		return nil
	}
	err = start()
	for wait := time.Now().Add(siteStartWait); errors.Is(err, auth.ErrUnavailable) && time.Now().Before(wait); {
		// A site box may start while etcd settles or has no majority:
		// it waits a little, then exits for systemd to start it again.
		if a.outage.allow() {
			a.log.Warn("etcd does not answer yet; waiting for it", "for", siteStartWait, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		err = start()
	}
	if err != nil {
		return nil, err
	}
	a.checkStart = time.Now()
	a.checked = make(chan struct{})
	if f, ok := db.(fileBackend); ok {
		a.checkDone = f.CheckInBackground()
	} else {
		close(a.checked) // nothing to walk
	}
	return svc, nil
}

// startBackground starts the audit writer, the sweep and the control
// socket. Whatever goes wrong in them (a panic in a goroutine) stops serve
// through a.fatal, cleanly with a non-zero exit and saying why, instead of
// crashing or serving on.
func (a *app) startBackground(cfg *config, svc *auth.Service) (*auth.Auditor, error) {
	log, db := a.log, a.db
	auditor := auth.NewAuditor(db, cfg.AuditEntries, cfg.AuditAge, nil, func(err error) {
		if p := (*auth.PanicError)(nil); errors.As(err, &p) {
			a.fatal.stop(fmt.Errorf("the audit writer stopped: %w (a bug in vmsauth: please report it with the service's log)", err))
			return
		}
		if errors.Is(err, auth.ErrUnavailable) {
			// An etcd site without a majority: an outage, not the box's
			// fault. The batch is lost, as with any failed audit write;
			// it holds the attempts answered 503 meanwhile.
			if a.outage.allow() {
				log.Warn("writing the audit trail: the store is unavailable (logged once a minute)", "err", err)
			}
			return
		}
		log.Error("writing the audit trail", "err", err)
	})
	a.onClose(func() { auditor.Close() })
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	swept := make(chan struct{})
	goSafe(a.fatal, "sweep", func() {
		select {
		case <-a.checked:
			sweep(sweepCtx, db, log, &a.outage)
		case <-sweepCtx.Done():
		}
	}, func() { close(swept) })
	// The sweep must be out of the database before it closes.
	a.onClose(func() { stopSweep(); <-swept })

	ctl, err := listenControl(cfg.Data)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ctlCtx, stopCtl := context.WithCancel(context.Background())
	ctlDone := make(chan struct{})
	goSafe(a.fatal, "control socket", func() { serveControl(ctlCtx, ctl, &local{db: db, svc: svc, audit: auditor, dir: cfg.Data}, log) }, func() { close(ctlDone) })
	// Commands in flight on the socket finish before the database closes.
	a.onClose(func() { stopCtl(); <-ctlDone })
	return auditor, nil
}

// handlers builds the HTTP side: captchas, throttle, the three APIs.
func (a *app) handlers(cfg *config, svc *auth.Service, auditor *auth.Auditor) (*web.Handlers, error) {
	ccfg := captcha.Config{}
	tcfg := auth.ThrottleConfig{IPLimit: cfg.IPLimit, LoginLimit: cfg.LoginLimit, Window: cfg.ThrottleWindow}
	if site, ok := a.db.(*etcdstore.Store); ok {
		shared, err := a.openSiteShared(site)
		if err != nil {
			return nil, err
		}
		shared.apply(&ccfg, &tcfg)
	} else {
		secret, err := captchaSecret(cfg.Data, a.log)
		if err != nil {
			return nil, err
		}
		ccfg.Secret = secret
	}
	captchas, err := captcha.New(ccfg)
	if err != nil {
		return nil, err
	}
	proxies, _ := cfg.proxies()
	allow, _ := cfg.metricsAllow()
	db := a.db
	return web.NewHandlers(svc, web.Options{
		TrustedProxies: proxies,
		Logger:         a.log,
		Throttle:       auth.NewThrottle(tcfg),
		Captchas:       captchas,
		RequireCaptcha: cfg.Captcha,
		Audit:          auditor,
		LiveSessions:   func() (map[auth.API]int, error) { return db.LiveSessions(time.Now()) },
		MetricsAllow:   allow,
	})
}

// listen opens the main listener and the forward-auth one, if any, and
// says where the service listens; Run serves on them.
func (a *app) listen(cfg *config, hs *web.Handlers) error {
	log := a.log
	srv := web.NewServer(cfg.Listen, hs.Main)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)

	certFile, keyFile := cfg.TLSCert, cfg.TLSKey
	if !cfg.InsecureHTTP && certFile == "" {
		var err error
		if certFile, keyFile, err = web.SelfSigned(cfg.Data); err != nil {
			return fmt.Errorf("self-signed certificate: %w", err)
		}
	}
	// The first admin's password and the self-signed key are new files.
	if err := giveToDirOwner(cfg.Data); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	ln = web.LimitConns(ln, cfg.connLimit(log))
	scheme := "https"
	if cfg.InsecureHTTP {
		scheme = "http"
	}
	// Both listeners are open before the line that says the service listens.
	faSrv, faLn, where, err := openForwardAuth(cfg, hs.ForwardAuth, log)
	if err != nil {
		ln.Close()
		return err
	}
	// Serve closes the listeners as Run shuts down; these close them when
	// Run never ran.
	a.onClose(func() { ln.Close() })
	if faLn != nil {
		a.onClose(func() { faLn.Close() })
	}
	a.url = fmt.Sprintf("%s://%s", scheme, ln.Addr())
	log.Info("vmsauth listening", "url", a.url, "data", cfg.Data, "version", buildVersion())
	a.servers = []stopper{srv}
	if cfg.InsecureHTTP {
		a.serve = []func() error{func() error { return srv.Serve(ln) }}
	} else {
		a.serve = []func() error{func() error { return srv.ServeTLS(ln, certFile, keyFile) }}
	}
	if faSrv != nil {
		a.faURL = where
		a.servers = append(a.servers, faSrv)
		a.serve = append(a.serve, func() error { return faSrv.Serve(faLn) })
	}
	return nil
}

// stopper is a server Run shuts down: an http.Server, or the forward-auth
// listener's own.
type stopper interface {
	Shutdown(context.Context) error
	Close() error
}

// onClose adds a step to Close.
func (a *app) onClose(f func()) { a.closers = append(a.closers, f) }

// URL is the base URL of the login APIs, with the port the listener got.
func (a *app) URL() string { return a.url }

// ForwardAuthURL is where the forward-auth listener is: http://ADDR or
// unix:PATH, or "" when it is off.
func (a *app) ForwardAuthURL() string { return a.faURL }

// Close releases what newApp opened, last first: the sweep and the
// control socket stop, the audit trail is written, rehashes finish, then
// the database closes. Run must have returned.
func (a *app) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Run serves until ctx ends, a listener fails or something fatal happens
// in the background, then shuts the listeners down, giving requests in
// flight shutdownGrace to finish.
func (a *app) Run(ctx context.Context) error {
	log := a.log
	errc := make(chan error, len(a.serve))
	for _, fn := range a.serve {
		go func() { errc <- fn() }()
	}
	checkDone := a.checkDone
	var failed error
wait:
	for {
		select {
		case err := <-errc:
			// One listener failed: the other stops too (its unix socket,
			// if any, is removed as it closes).
			for _, s := range a.servers {
				s.Close()
			}
			return err
		case <-ctx.Done():
			log.Info("shutting down")
			break wait
		case err := <-checkDone:
			if err != nil {
				failed = err
				break wait
			}
			log.Info("database checked", "took", time.Since(a.checkStart).Round(time.Millisecond))
			checkDone = nil
			close(a.checked)
		case <-a.db.Failed():
			failed = a.db.Failure()
			break wait
		case <-a.fatal.done:
			failed = a.fatal.err
			break wait
		}
	}
	if failed != nil {
		// Logged once, with the stack of a panic, here; the error itself
		// is what the caller prints as the process ends.
		attrs := []any{"err", failed}
		if p := (*auth.PanicError)(nil); errors.As(failed, &p) {
			attrs = append(attrs, "stack", p.Stack)
		}
		log.Error("stopping the service", attrs...)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, s := range a.servers {
		if err := s.Shutdown(sctx); err != nil {
			log.Warn("shutdown did not finish in time; closing", "err", err)
			s.Close()
		}
	}
	if failed != nil {
		return fmt.Errorf("stopped: %w", failed)
	}
	var firstErr error
	for range a.servers {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// fatalStop is the first failure that must stop serve.
type fatalStop struct {
	once sync.Once
	done chan struct{}
	err  error
}

func newFatal() *fatalStop { return &fatalStop{done: make(chan struct{})} }

func (f *fatalStop) stop(err error) {
	f.once.Do(func() { f.err = err; close(f.done) })
}

// goSafe runs fn in a goroutine, then after (always). A panic in fn stops
// serve through f instead of killing the process: systemd would restart
// it into the same panic, with nothing said but a stack trace.
func goSafe(f *fatalStop, name string, fn, after func()) {
	go func() {
		defer after()
		defer func() {
			if v := recover(); v != nil {
				f.stop(fmt.Errorf("the %s stopped: %w (a bug in vmsauth: please report it with the service's log)", name, auth.Recovered(v)))
			}
		}()
		fn()
	}()
}

// Sweep timing: expired sessions are kept a week so their tokens answer
// "expired" rather than "invalid", and the sweep runs hourly.
const (
	sweepKeep  = 7 * 24 * time.Hour
	sweepEvery = time.Hour
)

// sweep deletes dead sessions and refresh tokens now and every hour until
// ctx ends, so the database file does not grow forever.
func sweep(ctx context.Context, db Backend, log *slog.Logger, outage *everyMinute) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		if n, err := db.Sweep(time.Now(), sweepKeep); errors.Is(err, auth.ErrUnavailable) {
			if outage.allow() {
				log.Warn("sweeping expired sessions: the store is unavailable; trying again in an hour", "err", err)
			}
		} else if err != nil {
			log.Error("sweeping expired sessions", "err", err)
		} else if n > 0 {
			log.Info("swept expired sessions and tokens", "removed", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// openService opens the database in dir (creating dir and the database if
// needed, unless read-only) and builds the rules on it. It is where the
// commands' backend is chosen: bbolt, in one file.
func openService(dir string, acfg auth.Config, opts store.Options) (Backend, *auth.Service, error) {
	path := filepath.Join(dir, databaseFile)
	if opts.ReadOnly {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("no database in %s yet (vmsauth serve or vmsauth user add makes it)", dir)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	db, err := store.Open(path, opts)
	if err != nil {
		return nil, nil, err
	}
	if err := giveToDirOwner(dir); err != nil {
		db.Close()
		return nil, nil, err
	}
	return withRules(db, acfg)
}

// withRules builds the rules on an open backend, closing it if they
// cannot be built: the last step of opening any backend.
func withRules(db Backend, acfg auth.Config) (Backend, *auth.Service, error) {
	svc, err := auth.New(db, acfg)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, svc, nil
}

// bootstrapAdmin makes the first administrator on a database that never
// held a user. Its password comes from VMSAUTH_ADMIN_PASSWORD, or is
// generated, printed once and kept in DATA/initial-admin-password (0600)
// for the installer. A file whose users were all deleted gets no new admin:
// one who can open the box adds one with "vmsauth user add".
func bootstrapAdmin(ctx context.Context, db Backend, svc *auth.Service, dir string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	held, err := db.HeldUsers()
	if err != nil {
		return err
	}
	if held {
		if n, err := db.CountUsers(ctx); err == nil && n == 0 {
			log.Warn("the database has no users left; add one with: vmsauth user add --login NAME --api admin --permissions all")
		}
		return nil
	}
	// The admin is the first write: the file must be sound before it (a
	// file with no user is small; the check is quick).
	if f, ok := db.(fileBackend); ok {
		if err := f.Check(); err != nil {
			return err
		}
	}
	password := getenv("VMSAUTH_ADMIN_PASSWORD")
	generated := password == ""
	if generated {
		var err error
		if password, err = auth.GeneratePassword(); err != nil {
			return err
		}
	}
	created, err := svc.Bootstrap(ctx, "admin", password)
	if err != nil || !created {
		return err
	}
	if !generated {
		fmt.Fprintln(stdout, "Created the first admin user \"admin\" with the password from VMSAUTH_ADMIN_PASSWORD.")
		return nil
	}
	path := filepath.Join(dir, initialPasswordFile)
	if err := atomicfile.Write(path, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Created the first admin user \"admin\" with password: %s\n(also kept in %s; change it after the first login)\n", password, path)
	return nil
}

// captchaSecret returns the secret that seals captcha keys, kept in
// DATA/captcha-secret (0600) and made on first start. A missing file is
// made anew even beside an existing database: that only voids the captchas
// pending at the time. A file of the wrong size is refused, not replaced:
// it was written whole (atomicfile), so something else changed it, and
// the operator should look.
func captchaSecret(dir string, log *slog.Logger) ([]byte, error) {
	path := filepath.Join(dir, captchaSecretFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) == captcha.SecretSize:
		return b, nil
	case err == nil:
		return nil, fmt.Errorf("%s is damaged (%d bytes, want %d): remove it and start again (a new one voids only the captchas pending now)", path, len(b), captcha.SecretSize)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("captcha secret: %w", err)
	}
	if b, err = captcha.NewSecret(); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("captcha secret: %w", err)
	}
	log.Info("made a new captcha secret", "file", path)
	return b, nil
}
