package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
	"vmsauth/etcdstore"
	"vmsauth/internal/atomicfile"
)

// A box of a site (serve --etcd) keeps users, sessions, refresh tokens and
// the audit trail in the site's etcd cluster instead of its own bbolt file.
// Its data directory still holds what stays per box: the TLS certificate,
// the control socket and the first admin's generated password. The login
// throttle and the captchas are the site's (see site_shared.go).

// etcdPasswordEnv holds the --etcd-user password. It is never a flag: a
// flag's value shows in ps and in the unit file.
const etcdPasswordEnv = "VMSAUTH_ETCD_PASSWORD"

// siteRequestTimeout bounds each request to one etcd member. Well under the
// 5 s in which a login must answer 503 when the site has no majority: a
// login's first read then fails within one timeout per member that does
// not refuse at once (dead members refuse at once), and a member frozen
// or cut off is left for the next one after it.
const siteRequestTimeout = time.Second

// siteStartWait is how long serve waits at start for etcd to answer
// before it gives up (and systemd starts it again).
const siteStartWait = 15 * time.Second

// siteMarkerFile, in the data directory of a box that serves a site, says
// so: the commands that would otherwise open the box's own file (user,
// audit, backup) go through the running service instead, and refuse when
// it does not run, rather than act on a file the site does not use.
const siteMarkerFile = "site"

// errSiteBox is why a command on a site box needs the running service.
var errSiteBox = errors.New("this box serves a site from etcd (serve --etcd), so its users are not in the local file")

// everyMinute lets a line through at most once a minute: an etcd outage
// fails every background write until it ends, and is one event.
type everyMinute struct{ last atomic.Int64 }

func (e *everyMinute) allow() bool {
	now := time.Now().Unix()
	last := e.last.Load()
	return now-last >= 60 && e.last.CompareAndSwap(last, now)
}

// validateEtcd checks the site options without reading any file.
func (c *config) validateEtcd() error {
	if c.Etcd == "" {
		for name, v := range map[string]string{"--etcd-ca": c.EtcdCA, "--etcd-cert": c.EtcdCert,
			"--etcd-key": c.EtcdKey, "--etcd-user": c.EtcdUser, "--etcd-password-file": c.EtcdPasswordFile} {
			if v != "" {
				return fmt.Errorf("%s needs --etcd", name)
			}
		}
		if c.EtcdPrefix != etcdstore.DefaultPrefix {
			return errors.New("--etcd-prefix needs --etcd")
		}
		if c.EtcdStaleGrace != etcdstore.DefaultStaleGrace {
			return errors.New("--etcd-stale-grace needs --etcd")
		}
		return nil
	}
	eps := splitList(c.Etcd)
	if len(eps) == 0 {
		return errors.New("--etcd: no URL given")
	}
	for _, e := range eps {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("--etcd: %q: want http://host:port or https://host:port", e)
		}
	}
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		return errors.New("--etcd-cert and --etcd-key go together")
	}
	if c.EtcdPasswordFile != "" && c.EtcdUser == "" {
		return errors.New("--etcd-password-file needs --etcd-user")
	}
	if c.EtcdStaleGrace < 0 {
		return fmt.Errorf("--etcd-stale-grace %v: want 0 or more, e.g. 60s", c.EtcdStaleGrace)
	}
	if c.EtcdPrefix == "" || strings.ContainsAny(c.EtcdPrefix, " \t\r\n") {
		return fmt.Errorf("--etcd-prefix %q: want a key prefix such as %s", c.EtcdPrefix, etcdstore.DefaultPrefix)
	}
	return nil
}

// etcdConfig reads what --etcd and the rest name: the TLS files and the
// password (from VMSAUTH_ETCD_PASSWORD or --etcd-password-file, not both).
func (c *config) etcdConfig(getenv func(string) string) (etcd.Config, error) {
	cfg := etcd.Config{Endpoints: splitList(c.Etcd), Timeout: siteRequestTimeout, Username: c.EtcdUser}
	https := false
	for _, e := range cfg.Endpoints {
		https = https || strings.HasPrefix(e, "https:")
	}
	if https || c.EtcdCA != "" || c.EtcdCert != "" {
		t, err := etcd.TLSConfig(c.EtcdCA, c.EtcdCert, c.EtcdKey)
		if err != nil {
			return cfg, err
		}
		cfg.TLS = t
	}
	env := getenv(etcdPasswordEnv)
	switch {
	case c.EtcdUser == "" && env != "":
		return cfg, fmt.Errorf("%s is set but --etcd-user is not", etcdPasswordEnv)
	case env != "" && c.EtcdPasswordFile != "":
		return cfg, fmt.Errorf("the etcd password comes from %s or --etcd-password-file, not both", etcdPasswordEnv)
	case env != "":
		cfg.Password = env
	case c.EtcdPasswordFile != "":
		b, err := os.ReadFile(c.EtcdPasswordFile)
		if err != nil {
			return cfg, fmt.Errorf("--etcd-password-file: %w", err)
		}
		cfg.Password = strings.TrimRight(string(b), "\r\n")
		if cfg.Password == "" {
			return cfg, fmt.Errorf("--etcd-password-file %s is empty", c.EtcdPasswordFile)
		}
	case c.EtcdUser != "":
		return cfg, fmt.Errorf("--etcd-user %s needs its password in %s or --etcd-password-file", c.EtcdUser, etcdPasswordEnv)
	}
	return cfg, nil
}

// openEtcdStore opens the site's store the options name, for a command
// that talks to etcd itself (site init, site status without the service).
func (c *config) openEtcdStore(getenv func(string) string) (*etcdstore.Store, error) {
	ecfg, err := c.etcdConfig(getenv)
	if err != nil {
		return nil, err
	}
	return etcdstore.Open(ecfg, c.EtcdPrefix)
}

// openSite opens the site's store for serve and builds the rules on it,
// and marks the data directory as a site box's (siteMarkerFile). It does
// not wait for etcd: the first request does, and a site without a
// majority answers 503 until it has one again.
func openSite(cfg *config, getenv func(string) string, acfg auth.Config) (Backend, *auth.Service, error) {
	ecfg, err := cfg.etcdConfig(getenv)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, nil, err
	}
	if err := atomicfile.Write(filepath.Join(cfg.Data, siteMarkerFile), []byte(siteMarker(cfg)), 0o600); err != nil {
		return nil, nil, err
	}
	if err := giveToDirOwner(cfg.Data); err != nil {
		return nil, nil, err
	}
	db, err := etcdstore.Open(ecfg, cfg.EtcdPrefix)
	if err != nil {
		return nil, nil, err
	}
	db.SetStaleGrace(cfg.EtcdStaleGrace)
	return withRules(db, acfg)
}

// leaveSite removes the site marker when the box serves from its own file
// again, and says so: its file holds what it held before it joined.
func leaveSite(dir string) (bool, error) {
	err := os.Remove(filepath.Join(dir, siteMarkerFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// isSiteBox says whether serve last ran with --etcd in dir.
func isSiteBox(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, siteMarkerFile))
	return err == nil
}
