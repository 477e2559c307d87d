package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/etcdstore"
	"vmsauth/web"
)

// config is everything serve can be told. Each field is one flag, and each
// flag also reads VMSAUTH_<FLAG> from the environment when not given on the
// command line, so the flag set is the single table of options.
type config struct {
	Data           string
	Listen         string
	TLSCert        string
	TLSKey         string
	InsecureHTTP   bool
	TrustedProxies string
	MaxConnsPerIP  int
	Captcha        bool
	IPLimit        int
	LoginLimit     int
	ThrottleWindow time.Duration
	BcryptCost     int
	SessionIdle    time.Duration
	AdminTTL       time.Duration
	IntegrationTTL time.Duration
	RefreshTTL     time.Duration
	Licenses       string
	MetricsAllow   string
	AuditEntries   int
	AuditAge       time.Duration
	LogLevel       string
	PrintConfig    bool
	// ForwardAuthListen and ForwardAuthGroup: the plain-HTTP listener for
	// the reverse proxy on the box itself (see forwardauth.go).
	ForwardAuthListen string
	ForwardAuthGroup  string
	// Etcd and the rest: the etcd cluster of a site of several boxes (see
	// site.go). The password is never a flag: it comes from
	// VMSAUTH_ETCD_PASSWORD or --etcd-password-file.
	Etcd             string
	EtcdCA           string
	EtcdCert         string
	EtcdKey          string
	EtcdUser         string
	EtcdPasswordFile string
	EtcdPrefix       string
	// EtcdStaleGrace: how long token checks answer from the box's cache
	// once its watch of the site is lost and etcd does not answer.
	EtcdStaleGrace time.Duration
}

// dataFlag is shared by every command that opens the database.
func dataFlag(fs *flag.FlagSet, dst *string) {
	fs.StringVar(dst, "data", "./data", "data directory (database, TLS certificate)")
}

// bcryptFlag is shared by every command that hashes passwords.
func bcryptFlag(fs *flag.FlagSet, dst *int) {
	fs.IntVar(dst, "bcrypt-cost", bcrypt.DefaultCost, "bcrypt cost of new password hashes (4-31)")
}

func serveFlags(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dataFlag(fs, &c.Data)
	fs.StringVar(&c.Listen, "listen", ":8443", "address to listen on")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (default: self-signed, made in the data directory)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS key file, with --tls-cert")
	fs.BoolVar(&c.InsecureHTTP, "insecure-http", false, "serve plain HTTP (only behind a TLS proxy)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs or addresses whose X-Forwarded-For is believed")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", web.DefaultMaxConnsPerIP, "connections one client address (IPv6: /64) may hold open; loopback and trusted proxies exempt; 0 = no cap")
	fs.BoolVar(&c.Captcha, "captcha", true, "require a captcha on client logins (--captcha=false turns it off)")
	fs.IntVar(&c.IPLimit, "throttle-ip-limit", auth.DefaultIPLimit, "login requests allowed per client IP per window")
	fs.IntVar(&c.LoginLimit, "throttle-login-limit", auth.DefaultLoginLimit, "failed logins allowed per login name per window")
	fs.DurationVar(&c.ThrottleWindow, "throttle-window", auth.DefaultWindow, "sliding window of the login throttle")
	bcryptFlag(fs, &c.BcryptCost)
	fs.DurationVar(&c.SessionIdle, "session-idle", auth.DefaultClientIdle, "client sessions end after this long unused")
	fs.DurationVar(&c.AdminTTL, "admin-token-ttl", auth.DefaultAdminTTL, "lifetime of admin tokens")
	fs.DurationVar(&c.IntegrationTTL, "integration-token-ttl", auth.DefaultIntegrationTTL, "lifetime of integration tokens")
	fs.DurationVar(&c.RefreshTTL, "refresh-token-ttl", auth.DefaultRefreshTTL, "lifetime of integration refresh tokens")
	fs.StringVar(&c.Licenses, "analytic-licenses", "", `analytic license pool, e.g. "analytic_l1=100/2,analytic_l2=100/0" (type=all/used)`)
	fs.StringVar(&c.MetricsAllow, "metrics-allow", "", "comma-separated CIDRs besides loopback that may read /metrics")
	fs.IntVar(&c.AuditEntries, "audit-max-entries", auth.DefaultAuditEntries, "login attempts kept in the audit trail")
	fs.DurationVar(&c.AuditAge, "audit-max-age", auth.DefaultAuditAge, "how long login attempts are kept in the audit trail")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.ForwardAuthListen, "forward-auth-listen", "", "plain-HTTP listener for a reverse proxy on this box, only /auth/verify and /healthz: 127.0.0.1:PORT, [::1]:PORT or unix:/path (empty: off)")
	fs.StringVar(&c.ForwardAuthGroup, "forward-auth-group", "", "group (name or id) given the --forward-auth-listen unix socket, mode 0660, e.g. www-data (default: the group of its directory)")
	etcdFlags(fs, c)
	fs.BoolVar(&c.PrintConfig, "print-config", false, "print the effective configuration and exit")
	return fs
}

// etcdFlags are the options of a box that is one of a site's (site.go).
func etcdFlags(fs *flag.FlagSet, c *config) {
	fs.StringVar(&c.Etcd, "etcd", "", "comma-separated client URLs of the site's etcd cluster, e.g. https://10.0.0.5:2379,https://10.0.0.6:2379 (empty: this box alone, on its own database file)")
	fs.StringVar(&c.EtcdCA, "etcd-ca", "", "CA bundle that signed the etcd members' certificates (default: the system's roots)")
	fs.StringVar(&c.EtcdCert, "etcd-cert", "", "client certificate for etcd's --client-cert-auth, with --etcd-key")
	fs.StringVar(&c.EtcdKey, "etcd-key", "", "client key, with --etcd-cert")
	fs.StringVar(&c.EtcdUser, "etcd-user", "", "etcd user name (its password from VMSAUTH_ETCD_PASSWORD or --etcd-password-file)")
	fs.StringVar(&c.EtcdPasswordFile, "etcd-password-file", "", "file holding the --etcd-user password (one line)")
	fs.StringVar(&c.EtcdPrefix, "etcd-prefix", etcdstore.DefaultPrefix, "key prefix of this site in etcd")
	fs.DurationVar(&c.EtcdStaleGrace, "etcd-stale-grace", etcdstore.DefaultStaleGrace, "when etcd has no majority, token checks answer from this box's cache for this long after it lost its watch of the site, then refuse (503); 0: refuse at once")
}

// parseFlags parses args, then fills every flag not given from
// VMSAUTH_<FLAG> of env. A bad value names the flag or variable it came
// from.
func parseFlags(fs *flag.FlagSet, args []string, env Env) error {
	_, err := parseFlagSources(fs, args, env.Getenv, env.Stderr)
	return err
}

// parseFlagSources is parseFlags that also tells where each set flag's
// value came from: "flag" or the environment variable's name.
func parseFlagSources(fs *flag.FlagSet, args []string, getenv func(string) string, stderr io.Writer) (map[string]string, error) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		// flag has printed the problem and the usage.
		return nil, errUsage
	}
	if fs.NArg() > 0 && fs.Name() == "serve" {
		fmt.Fprintf(stderr, "vmsauth serve: unexpected argument %q\n", fs.Arg(0))
		return nil, errUsage
	}
	sources := map[string]string{}
	fs.Visit(func(f *flag.Flag) { sources[f.Name] = "flag" })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if sources[f.Name] != "" || f.Name == "print-config" || err != nil {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, e)
			}
			sources[f.Name] = name
		}
	})
	return sources, err
}

func envName(flagName string) string {
	return "VMSAUTH_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// validate checks the options once, at start, naming the one at fault.
func (c *config) validate() error {
	if c.Data == "" {
		return errors.New("--data must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. :8443", c.Listen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.InsecureHTTP && c.TLSCert != "" {
		return errors.New("--insecure-http cannot be combined with --tls-cert")
	}
	if _, err := c.proxies(); err != nil {
		return err
	}
	if c.MaxConnsPerIP < 0 || c.MaxConnsPerIP > 1000000 {
		return fmt.Errorf("--max-conns-per-ip %d: want 0 (no cap) to 1000000", c.MaxConnsPerIP)
	}
	if c.IPLimit < 1 || c.LoginLimit < 1 || c.IPLimit > 100000 || c.LoginLimit > 100000 {
		return errors.New("--throttle-ip-limit and --throttle-login-limit must be from 1 to 100000")
	}
	if c.ThrottleWindow < time.Second {
		return fmt.Errorf("--throttle-window %s: want at least 1s", c.ThrottleWindow)
	}
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		return fmt.Errorf("--bcrypt-cost %d: want %d to %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	for name, d := range map[string]time.Duration{
		"--session-idle": c.SessionIdle, "--admin-token-ttl": c.AdminTTL,
		"--integration-token-ttl": c.IntegrationTTL, "--refresh-token-ttl": c.RefreshTTL,
	} {
		if d < time.Minute {
			return fmt.Errorf("%s %s: want at least 1m", name, d)
		}
	}
	if _, err := c.metricsAllow(); err != nil {
		return err
	}
	if c.AuditEntries < 1 || c.AuditAge < time.Hour {
		return errors.New("--audit-max-entries must be at least 1 and --audit-max-age at least 1h")
	}
	if _, err := c.licenses(); err != nil {
		return err
	}
	if _, err := c.level(); err != nil {
		return err
	}
	if _, err := c.forwardAuth(); err != nil {
		return err
	}
	return c.validateEtcd()
}

// proxies parses --trusted-proxies into CIDRs or addresses Gin accepts.
func (c *config) proxies() ([]string, error) {
	var out []string
	for _, p := range splitList(c.TrustedProxies) {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is neither an address nor a CIDR", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// connLimit is the per-address connection cap of --max-conns-per-ip.
// Loopback and --trusted-proxies peers are exempt: a reverse proxy on the
// box or in front of it carries many clients' connections.
func (c *config) connLimit(log *slog.Logger) web.ConnLimit {
	exempt := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	proxies, _ := c.proxies()
	for _, p := range proxies {
		if pre, err := netip.ParsePrefix(p); err == nil {
			exempt = append(exempt, pre.Masked())
		} else if a, err := netip.ParseAddr(p); err == nil {
			exempt = append(exempt, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return web.ConnLimit{Max: c.MaxConnsPerIP, Exempt: exempt, Logger: log}
}

// metricsAllow parses --metrics-allow; a bare address is a one-host network.
func (c *config) metricsAllow() ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, p := range splitList(c.MetricsAllow) {
		if ip := net.ParseIP(p); ip != nil {
			p += map[bool]string{true: "/32", false: "/128"}[ip.To4() != nil]
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return nil, fmt.Errorf("--metrics-allow: %q is neither an address nor a CIDR", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// licenses parses --analytic-licenses: "type=all/used,...".
func (c *config) licenses() ([]auth.License, error) {
	var out []auth.License
	for _, item := range splitList(c.Licenses) {
		typ, counts, ok := strings.Cut(item, "=")
		allS, usedS, ok2 := strings.Cut(counts, "/")
		all, err1 := strconv.Atoi(allS)
		used, err2 := strconv.Atoi(usedS)
		if !ok || !ok2 || typ == "" || err1 != nil || err2 != nil || all < 0 || used < 0 || used > all {
			return nil, fmt.Errorf("--analytic-licenses: %q: want type=all/used with 0 <= used <= all", item)
		}
		out = append(out, auth.License{Type: typ, TypePretty: prettyLicense(typ), All: all, Used: used, Free: all - used})
	}
	return out, nil
}

// prettyLicense names a pool the way the seed product prints it:
// analytic_l1 → LIC-XXXX-YY-L1.
func prettyLicense(typ string) string {
	if i := strings.LastIndexByte(typ, '_'); i >= 0 {
		return "LIC-XXXX-YY-" + strings.ToUpper(typ[i+1:])
	}
	return strings.ToUpper(typ)
}

func (c *config) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

func (c *config) authConfig() auth.Config {
	lic, _ := c.licenses()
	return auth.Config{
		BcryptCost: c.BcryptCost, ClientIdle: c.SessionIdle, AdminTTL: c.AdminTTL,
		IntegrationTTL: c.IntegrationTTL, RefreshTTL: c.RefreshTTL, Licenses: lic,
	}
}

// printConfig writes every option as flag=value with where it came from.
// No option is a secret: the initial admin password comes only from
// VMSAUTH_ADMIN_PASSWORD and the etcd password only from
// VMSAUTH_ETCD_PASSWORD or a file (whose path is shown, not its content);
// the two variables are shown redacted.
func printConfig(fs *flag.FlagSet, sources map[string]string, getenv func(string) string, w io.Writer) {
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "print-config" {
			return
		}
		src := sources[f.Name]
		if src == "" {
			src = "default"
		}
		fmt.Fprintf(w, "%-22s = %-24q # %s\n", f.Name, f.Value.String(), src)
	})
	if getenv("VMSAUTH_ADMIN_PASSWORD") != "" {
		fmt.Fprintf(w, "%-22s = %-24q # VMSAUTH_ADMIN_PASSWORD\n", "admin-password", "[redacted]")
	}
	if getenv(etcdPasswordEnv) != "" {
		fmt.Fprintf(w, "%-22s = %-24q # %s\n", "etcd-password", "[redacted]", etcdPasswordEnv)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
