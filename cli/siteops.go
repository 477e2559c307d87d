package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"vmsauth/auth"
	"vmsauth/etcdstore"
	"vmsauth/store"
)

// The site commands: `site init` makes a box's file the first of a site
// (or loads a backup into one), `site status` shows the cluster and this
// box's watch of it; and a site box's backup, one revision of the site
// written as an ordinary database file.

// siteStore is what the site commands need of a running site box's
// backend (etcdstore.Store).
type siteStore interface {
	Status(ctx context.Context) *etcdstore.SiteStatus
	WatchState() etcdstore.WatchState
	Snapshot(ctx context.Context) (*auth.Snapshot, int64, error)
}

var _ siteStore = (*etcdstore.Store)(nil)

// siteCommand runs `site init` or `site status`.
func siteCommand(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, "vmsauth site: want init or status\n")
		return errUsage
	}
	switch args[0] {
	case "init":
		if env.local != nil {
			// The socket lets `site` through for status only: init
			// reads a file and fills a cluster, which the service has
			// no business doing for a caller.
			return errors.New("site init does not run through the service")
		}
		return siteInit(ctx, env, args[1:])
	case "status":
		return siteStatus(ctx, env, args)
	}
	fmt.Fprintf(env.Stderr, "vmsauth site: unknown subcommand %q (want init or status)\n", args[0])
	return errUsage
}

// siteFlags are the flags of the site commands: the data directory and
// the etcd options, as serve takes them.
func siteFlags(name string, cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet("site "+name, flag.ContinueOnError)
	dataFlag(fs, &cfg.Data)
	etcdFlags(fs, cfg)
	return fs
}

// siteInit copies a box's database (DATA's, or --from FILE: a backup) into
// an empty site prefix.
func siteInit(ctx context.Context, env Env, args []string) error {
	var cfg config
	var from string
	fs := siteFlags("init", &cfg)
	fs.StringVar(&from, "from", "", "database file to copy (a backup) instead of DATA's own")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "vmsauth site init: unexpected %q\n", fs.Arg(0))
		return errUsage
	}
	if cfg.Etcd == "" {
		return errors.New("site init needs --etcd: the client URLs of the site's etcd cluster")
	}
	if err := cfg.validateEtcd(); err != nil {
		return err
	}
	src := from
	if src == "" {
		if isSiteBox(cfg.Data) {
			return fmt.Errorf("%s serves a site already (serve --etcd): its own file holds what it held before it joined, not the site; to load a backup into a site, give --from FILE", cfg.Data)
		}
		src = filepath.Join(cfg.Data, databaseFile)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("no database to copy: %w", err)
	}
	// Read-only: the box's file is left exactly as it is.
	db, err := store.Open(src, store.Options{ReadOnly: true, ReleaseEvery: -1})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("the service is running on %s; stop it first (vmsauth stop), so that no login made after the copy is lost, then run site init, then start the box with --etcd", cfg.Data)
	}
	if err != nil {
		return err
	}
	snap, err := db.Snapshot()
	db.Close()
	if err != nil {
		return err
	}
	site, err := cfg.openEtcdStore(env.Getenv)
	if err != nil {
		return err
	}
	defer site.Close()
	host, _ := os.Hostname()
	abs, _ := filepath.Abs(src)
	stats, err := site.Load(ctx, snap, host+":"+abs)
	if err != nil {
		return err
	}
	if stats.Redone {
		fmt.Fprintf(env.Stdout, "An earlier site init on %s had not finished; it was done again from the start.\n", site.Prefix())
	}
	fmt.Fprintf(env.Stdout, "Copied %d users, %d sessions, %d refresh tokens and %d audit entries from %s into the site at %s (etcd revision %d).\n",
		stats.Users, stats.Sessions, stats.Refreshes, stats.Audit, src, site.Prefix(), stats.Revision)
	fmt.Fprintf(env.Stdout, "%s is left untouched (read only); a box serving the site no longer uses it.\n", src)
	fmt.Fprintf(env.Stdout, "Next: start this box and each other box with --etcd %s%s (vmsauth install --etcd ... on each).\n",
		cfg.Etcd, map[bool]string{true: "", false: " --etcd-prefix " + cfg.EtcdPrefix}[cfg.EtcdPrefix == etcdstore.DefaultPrefix])
	return nil
}

// siteStatus prints the cluster's members, its leader, revision and size,
// and this box's watch: through the running service when it runs, else
// from etcd directly, with the --etcd options or those the box last
// served with. It fails when the site has no leader.
func siteStatus(ctx context.Context, env Env, args []string) error {
	original := append([]string{"site"}, args...)
	var cfg config
	fs := siteFlags("status", &cfg)
	if err := parseFlags(fs, args[1:], env); err != nil {
		return err
	}
	if env.local != nil {
		s, ok := env.local.db.(siteStore)
		if !ok {
			return errors.New("this box serves its own file, not a site (serve without --etcd)")
		}
		ws := s.WatchState()
		return printSiteStatus(env.Stdout, s.Status(ctx), &ws)
	}
	if isSiteBox(cfg.Data) && serviceAnswers(cfg.Data) {
		return forward(ctx, env, cfg.Data, original, errSiteBox)
	}
	if cfg.Etcd == "" {
		if !readSiteMarker(cfg.Data, &cfg) {
			return fmt.Errorf("%s is not a site box (no %s in it: serve never ran there with --etcd); give --etcd to ask a cluster", cfg.Data, siteMarkerFile)
		}
	}
	if err := cfg.validateEtcd(); err != nil {
		return err
	}
	site, err := cfg.openEtcdStore(env.Getenv)
	if err != nil {
		return err
	}
	defer site.Close()
	fmt.Fprintf(env.Stdout, "The service is not running on %s: asking etcd directly.\n", cfg.Data)
	return printSiteStatus(env.Stdout, site.Status(ctx), nil)
}

// serviceAnswers says whether a service listens on the control socket in
// dir now: one dial, no wait (socketClient waits for a starting service).
func serviceAnswers(dir string) bool {
	c, err := net.DialTimeout("unix", filepath.Join(dir, socketFile), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// printSiteStatus writes st (and the box's watch, when the service runs)
// as text, and returns exit status 1 when the site has no leader.
func printSiteStatus(w io.Writer, st *etcdstore.SiteStatus, ws *etcdstore.WatchState) error {
	leader := ""
	for _, m := range st.Members {
		if m.ID == st.Leader && st.Leader != 0 {
			leader = memberName(m)
		}
	}
	fmt.Fprintf(w, "Site at prefix %s\n", st.Prefix)
	switch {
	case st.Leader == 0:
		fmt.Fprintln(w, "Leader:    NONE: the site has no leader (no majority of members, or an election under way); logins and changes fail until it has one")
	case leader == "":
		fmt.Fprintf(w, "Leader:    %x\n", st.Leader)
	default:
		fmt.Fprintf(w, "Leader:    %s\n", leader)
	}
	if st.Revision > 0 {
		fmt.Fprintf(w, "Revision:  %d\n", st.Revision)
	}
	if st.ListErr != nil {
		fmt.Fprintf(w, "Members:   the member list could not be read: %v\n", st.ListErr)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tID\tCLIENT URLS\tROLE\tREVISION\tDB SIZE\tVERSION")
	for _, m := range st.Members {
		role, rev, size, version := "", "-", "-", "-"
		switch {
		case m.Status != nil:
			role = "follower"
			if m.ID == st.Leader {
				role = "leader"
			}
			if m.IsLearner {
				role = "learner"
			}
			if len(m.Status.Errors) > 0 {
				role += " (alarm: " + strings.Join(m.Status.Errors, ", ") + ")"
			}
			rev = strconv.FormatInt(m.Status.Header.Revision, 10)
			size = fmt.Sprintf("%s (%s in use)", byteSize(m.Status.DBSize), byteSize(m.Status.DBSizeInUse))
			version = m.Status.Version
		case m.Err != nil:
			role = "UNREACHABLE: " + m.Err.Error()
		default:
			role = "not among this box's --etcd URLs"
		}
		id := "-"
		if m.ID != 0 {
			id = fmt.Sprintf("%x", m.ID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", memberName(m), id, strings.Join(m.ClientURLs, ","), role, rev, size, version)
	}
	tw.Flush()
	if errors.Is(st.InitErr, etcdstore.ErrInitUnfinished) {
		fmt.Fprintf(w, "Site init: UNFINISHED: %v\n", st.InitErr)
	}
	if ws != nil {
		state := "DOWN"
		if ws.Up {
			state = "up"
		}
		fmt.Fprintf(w, "This box:  the service is running; watch %s", state)
		if !ws.Since.IsZero() {
			fmt.Fprintf(w, " since %s", ws.Since.Local().Format(time.DateTime))
		}
		fmt.Fprintf(w, ", at revision %d, %d sessions cached", ws.Revision, ws.Cached)
		if ws.Error != "" {
			fmt.Fprintf(w, " (%s)", ws.Error)
		}
		fmt.Fprintln(w)
	}
	if st.Leader == 0 {
		return exitCode(1)
	}
	return nil
}

func memberName(m etcdstore.MemberStatus) string {
	if m.Name != "" {
		return m.Name
	}
	if m.ID == 0 {
		return "?"
	}
	return "(unstarted)"
}

func byteSize(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 10<<10:
		return fmt.Sprintf("%d kB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// siteMarker is the content of DATA/site: the options serve last ran with
// (paths and names, never the password), so that `site status` reaches
// the cluster when the service does not run.
func siteMarker(c *config) string {
	var b strings.Builder
	for _, kv := range [][2]string{{"etcd", strings.Join(splitList(c.Etcd), ",")}, {"prefix", c.EtcdPrefix},
		{"ca", c.EtcdCA}, {"cert", c.EtcdCert}, {"key", c.EtcdKey}, {"user", c.EtcdUser}, {"password-file", c.EtcdPasswordFile}} {
		if kv[1] != "" || kv[0] == "etcd" || kv[0] == "prefix" {
			fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
		}
	}
	return b.String()
}

// readSiteMarker fills c's etcd options from DATA/site, and says whether
// there was one.
func readSiteMarker(dir string, c *config) bool {
	f, err := os.Open(filepath.Join(dir, siteMarkerFile))
	if err != nil {
		return false
	}
	defer f.Close()
	dst := map[string]*string{"etcd": &c.Etcd, "prefix": &c.EtcdPrefix, "ca": &c.EtcdCA, "cert": &c.EtcdCert,
		"key": &c.EtcdKey, "user": &c.EtcdUser, "password-file": &c.EtcdPasswordFile}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if p := dst[k]; ok && p != nil {
			*p = v
		}
	}
	return c.Etcd != ""
}

// checkSiteInit refuses to serve a site whose init has not finished: its
// users are half there.
func checkSiteInit(ctx context.Context, db Backend) error {
	if s, ok := db.(interface{ CheckInit(context.Context) error }); ok {
		return s.CheckInit(ctx)
	}
	return nil
}

// siteBackupHeader carries the revision a site backup was read at.
const siteBackupHeader = "X-Vmsauth-Site-Revision"

// serveSiteBackup answers the control socket's GET /backup on a site box:
// the site read at one revision, written as a new database file in a
// temp directory under dir (the service's data directory: a site may be
// large for /tmp), then sent. Nothing is sent before the file is whole, so
// a failure is an HTTP error the command reports.
func serveSiteBackup(w http.ResponseWriter, r *http.Request, s siteStore, dir string, log *slog.Logger) {
	snap, rev, err := s.Snapshot(r.Context())
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, auth.ErrUnavailable) {
			status = http.StatusServiceUnavailable
		} else if !errors.Is(err, etcdstore.ErrInitUnfinished) {
			log.Error("site backup: reading the site", "err", err)
		}
		http.Error(w, err.Error(), status)
		return
	}
	if dir == "" {
		dir = os.TempDir()
	}
	tmp, err := os.MkdirTemp(dir, ".site-backup-")
	if err != nil {
		log.Error("site backup", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "backup.db")
	if err := store.WriteSnapshot(path, snap); err != nil {
		log.Error("site backup: writing the file", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		log.Error("site backup", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(siteBackupHeader, strconv.FormatInt(rev, 10))
	if _, err := io.Copy(w, f); err != nil {
		log.Warn("site backup: sending the file", "err", err)
	}
}
