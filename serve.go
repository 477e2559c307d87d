package main

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

func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg config
	fs := serveFlags(&cfg)
	sources, err := parseFlagSources(fs, args, getenv, stderr)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.PrintConfig {
		printConfig(fs, sources, getenv, stdout)
		return nil
	}
	level, _ := cfg.level()
	log := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: level}))

	// The hashing pool stays as wide as the cores, and the scheduler gets one
	// P more: with every core hashing during a login flood, token checks
	// still find a free P instead of waiting for bcrypt to be preempted. It
	// is put back on return so that serving twice in one process (the tests)
	// does not add a P each time.
	workers := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(workers + 1)
	defer runtime.GOMAXPROCS(workers)
	acfg := cfg.authConfig()
	acfg.HashWorkers = workers
	acfg.Logger = log
	// Open refuses a file whose meta pages or schema are damaged. The walk
	// of every page takes longer on a large file than a start may, so it
	// runs beside the start: it holds off every write until it has passed,
	// /healthz answers 503 meanwhile, and a damaged file stops serve.
	db, svc, err := openService(cfg.Data, acfg, store.Options{ReleaseEvery: releaseEvery, CheckLater: true})
	if err != nil {
		return err
	}
	defer db.Close()
	// Rehashes that logins started finish before the database closes.
	defer svc.Wait()

	if err := bootstrapAdmin(ctx, db, svc, cfg.Data, getenv, stdout, log); err != nil {
		return fmt.Errorf("creating the first admin: %w", err)
	}
	checkStart := time.Now()
	checkDone := db.CheckInBackground()
	checked := make(chan struct{})

	// Whatever goes wrong in the background (a panic in a goroutine, damage
	// the store finds in its file) stops serve cleanly with a non-zero exit
	// and says why, instead of crashing or serving on.
	fatal := newFatal()
	auditor := auth.NewAuditor(db, cfg.AuditEntries, cfg.AuditAge, nil, func(err error) {
		if p := (*auth.PanicError)(nil); errors.As(err, &p) {
			fatal.stop(fmt.Errorf("the audit writer stopped: %w (a bug in vmsauth: please report it with the service's log)", err))
			return
		}
		log.Error("writing the audit trail", "err", err)
	})
	defer auditor.Close()
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	goSafe(fatal, "sweep", func() {
		select {
		case <-checked:
			sweep(sweepCtx, db, log)
		case <-sweepCtx.Done():
		}
	}, func() { close(swept) })
	// The sweep must be out of the database before it closes.
	defer func() { stopSweep(); <-swept }()

	ctl, err := listenControl(cfg.Data)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	ctlCtx, stopCtl := context.WithCancel(context.Background())
	ctlDone := make(chan struct{})
	goSafe(fatal, "control socket", func() { serveControl(ctlCtx, ctl, &local{db: db, svc: svc, audit: auditor}, log) }, func() { close(ctlDone) })
	// Commands in flight on the socket finish before the database closes.
	defer func() { stopCtl(); <-ctlDone }()

	secret, err := captchaSecret(cfg.Data, log)
	if err != nil {
		return err
	}
	captchas, err := captcha.New(captcha.Config{Secret: secret})
	if err != nil {
		return err
	}
	proxies, _ := cfg.proxies()
	allow, _ := cfg.metricsAllow()
	hs, err := web.NewHandlers(svc, web.Options{
		TrustedProxies: proxies,
		Logger:         log,
		Throttle: auth.NewThrottle(auth.ThrottleConfig{
			IPLimit: cfg.IPLimit, LoginLimit: cfg.LoginLimit, Window: cfg.ThrottleWindow,
		}),
		Captchas:       captchas,
		RequireCaptcha: cfg.Captcha,
		Audit:          auditor,
		LiveSessions:   func() (map[auth.API]int, error) { return db.LiveSessions(time.Now()) },
		MetricsAllow:   allow,
	})
	if err != nil {
		return err
	}
	srv := web.NewServer(cfg.Listen, hs.Main)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)

	certFile, keyFile := cfg.TLSCert, cfg.TLSKey
	if !cfg.InsecureHTTP && certFile == "" {
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
	faSrv, faLn, err := openForwardAuth(&cfg, hs.ForwardAuth, log)
	if err != nil {
		ln.Close()
		return err
	}
	log.Info("vmsauth listening", "url", fmt.Sprintf("%s://%s", scheme, ln.Addr()), "data", cfg.Data, "version", buildVersion())
	servers := []*http.Server{srv}

	errc := make(chan error, 2)
	go func() {
		if cfg.InsecureHTTP {
			errc <- srv.Serve(ln)
		} else {
			errc <- srv.ServeTLS(ln, certFile, keyFile)
		}
	}()
	if faSrv != nil {
		servers = append(servers, faSrv)
		go func() { errc <- faSrv.Serve(faLn) }()
	}
	var failed error
wait:
	for {
		select {
		case err := <-errc:
			// One listener failed: the other stops too (its unix socket,
			// if any, is removed as it closes).
			for _, s := range servers {
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
			log.Info("database checked", "took", time.Since(checkStart).Round(time.Millisecond))
			checkDone = nil
			close(checked)
		case <-db.Failed():
			failed = db.Failure()
			break wait
		case <-fatal.done:
			failed = fatal.err
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
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			log.Warn("shutdown did not finish in time; closing", "err", err)
			s.Close()
		}
	}
	if failed != nil {
		return fmt.Errorf("stopped: %w", failed)
	}
	var firstErr error
	for range servers {
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

// releaseEvery is how often serve gives back the pages of the database file
// that token checks have mapped (see store.Options.ReleaseEvery): often
// enough that the resident set stays near the process's own memory, rarely
// enough that the faults to map them again cost nothing measurable.
const releaseEvery = 10 * time.Second

// Sweep timing: expired sessions are kept a week so their tokens answer
// "expired" rather than "invalid", and the sweep runs hourly.
const (
	sweepKeep  = 7 * 24 * time.Hour
	sweepEvery = time.Hour
)

// sweep deletes dead sessions and refresh tokens now and every hour until
// ctx ends, so the database file does not grow forever.
func sweep(ctx context.Context, db *store.DB, log *slog.Logger) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		if n, err := db.Sweep(time.Now(), sweepKeep); err != nil {
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
// needed, unless read-only) and builds the rules on it.
func openService(dir string, acfg auth.Config, opts store.Options) (*store.DB, *auth.Service, error) {
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
func bootstrapAdmin(ctx context.Context, db *store.DB, svc *auth.Service, dir string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	held, err := db.HeldUsers()
	if err != nil {
		return err
	}
	if held {
		if n, err := db.CountUsers(); err == nil && n == 0 {
			log.Warn("the database has no users left; add one with: vmsauth user add --login NAME --api admin --permissions all")
		}
		return nil
	}
	// The admin is the first write: the file must be sound before it (a
	// file with no user is small; the check is quick).
	if err := db.Check(); err != nil {
		return err
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
	if err := web.WriteFileAtomic(path, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Created the first admin user \"admin\" with password: %s\n(also kept in %s; change it after the first login)\n", password, path)
	return nil
}

// captchaSecret returns the secret that seals captcha keys, kept in
// DATA/captcha-secret (0600) and made on first start. A missing file is
// made anew even beside an existing database: that only voids the captchas
// pending at the time. A file of the wrong size is refused, not replaced:
// it was written whole (WriteFileAtomic), so something else changed it, and
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
	if err := web.WriteFileAtomic(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("captcha secret: %w", err)
	}
	log.Info("made a new captcha secret", "file", path)
	return b, nil
}
