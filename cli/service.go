package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"vmsauth/install"
)

// serviceDataDir is where the installed service keeps its data unless
// --data says otherwise; systemd's StateDirectory for the unit.
const serviceDataDir = "/var/lib/vmsauth"

// serviceAccount is the system user the installed service runs as.
const serviceAccount = "vmsauth"

// serviceHost is the system the service commands act on. Tests set it to
// install a user unit against a fake systemctl, without root and without
// systemd; false and nil mean the real host.
type serviceHost struct {
	user       bool
	isRoot     func() bool
	hasSystemd func() bool
}

// serviceCommand manages the system service: install registers
// `vmsauth serve` with the given flags, the others act on that unit.
// env.Getenv is not consulted: the service will not see this shell's
// environment, so install checks the flags without it too.
func serviceCommand(env Env, action string, args []string) error {
	stdout, stderr := env.Stdout, env.Stderr
	cfg := install.Config{
		Name:        "vmsauth",
		DisplayName: "vmsauth",
		Description: "vmsauth login and token service",
		UserService: env.host.user,
		IsRoot:      env.host.isRoot,
		HasSystemd:  env.host.hasSystemd,
	}
	if action == "install" {
		if env.Getenv != nil && env.Getenv(etcdPasswordEnv) != "" {
			// The unit would not see it, and a unit file is no place for
			// a password: refuse rather than install a service that
			// cannot log in to etcd at boot.
			return serviceError(action, fmt.Errorf("%s is set, but the service does not see this shell's environment: put the password in a file only root and the service can read (e.g. /etc/vmsauth/etcd-password, mode 0640, group %s) and pass --etcd-password-file", etcdPasswordEnv, serviceAccount))
		}
		serveArgs, c, err := installArgs(args, stderr)
		if err != nil {
			return serviceError(action, err)
		}
		if !env.host.user {
			// A user unit runs as its user; only a system unit gets one.
			cfg.User = serviceAccount
			cfg.Reads = slices.DeleteFunc([]string{c.TLSCert, c.TLSKey, c.EtcdCA, c.EtcdCert, c.EtcdKey, c.EtcdPasswordFile},
				func(p string) bool { return p == "" })
		}
		if cfg.Capabilities, err = listenCapabilities(c.Listen); err != nil {
			return serviceError(action, err)
		}
		exe, err := os.Executable()
		if err == nil {
			// A symlink (e.g. /usr/local/bin/vmsauth) may later point at
			// another build; the unit names the binary actually run.
			exe, err = filepath.EvalSymlinks(exe)
		}
		if err != nil {
			return serviceError(action, fmt.Errorf("finding this program's path: %w", err))
		}
		cfg.Executable, cfg.Args, cfg.DataDir = exe, append([]string{"serve"}, serveArgs...), c.Data
	} else if len(args) > 0 {
		fmt.Fprintf(stderr, "vmsauth %s: unexpected argument %q\n", action, args[0])
		return errUsage
	}

	svc, err := install.New(cfg)
	if err != nil {
		return serviceError(action, err)
	}
	switch action {
	case "install":
		if err = svc.Install(); err == nil {
			path, _ := svc.UnitPath()
			who := ""
			if cfg.User != "" {
				who = "runs as user " + cfg.User + ", "
			}
			fmt.Fprintf(stdout, "installed %s (%sdata in %s); start it with: vmsauth start\n", path, who, cfg.DataDir)
		}
	case "uninstall":
		if err = svc.Uninstall(); err == nil {
			fmt.Fprintln(stdout, "uninstalled; the data directory was kept")
		}
	case "start", "stop", "restart":
		f := map[string]func() error{"start": svc.Start, "stop": svc.Stop, "restart": svc.Restart}[action]
		if err = f(); err == nil {
			fmt.Fprintf(stdout, "%s: done\n", action)
		}
	case "status":
		var st install.Status
		if st, err = svc.Status(); err == nil {
			fmt.Fprintln(stdout, st)
		}
	}
	return serviceError(action, err)
}

// installArgs checks the serve flags now, as serve will read them at boot,
// so a typo fails here and not in the journal. It returns them in one
// canonical --name=value form with --data defaulting to serviceDataDir,
// and the configuration they make.
func installArgs(args []string, stderr io.Writer) ([]string, *config, error) {
	var c config
	fs := serveFlags(&c)
	noEnv := Env{Getenv: func(string) string { return "" }, Stderr: stderr}
	if err := parseFlags(fs, args, noEnv); err != nil {
		return nil, nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["print-config"] {
		return nil, nil, errors.New("--print-config is not a service option")
	}
	if !given["data"] {
		c.Data = serviceDataDir
	}
	// Set marks the flag as given, so the loop below writes it out.
	if err := fs.Set("data", filepath.Clean(c.Data)); err != nil {
		return nil, nil, err
	}
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	if c.EtcdUser != "" && c.EtcdPasswordFile == "" {
		return nil, nil, fmt.Errorf("--etcd-user %s: the service needs its password in --etcd-password-file (it does not see %s from this shell)", c.EtcdUser, etcdPasswordEnv)
	}
	// The unit runs with / as working directory and ProtectHome=yes, and
	// a missing certificate would only show at boot.
	for _, p := range []struct {
		flag, path string
		mustExist  bool
	}{{"--data", c.Data, false}, {"--tls-cert", c.TLSCert, true}, {"--tls-key", c.TLSKey, true},
		{"--etcd-ca", c.EtcdCA, true}, {"--etcd-cert", c.EtcdCert, true}, {"--etcd-key", c.EtcdKey, true},
		{"--etcd-password-file", c.EtcdPasswordFile, true}} {
		if p.path == "" {
			continue
		}
		if !filepath.IsAbs(p.path) {
			return nil, nil, fmt.Errorf("%s %q: the service needs an absolute path", p.flag, p.path)
		}
		if underAny(p.path, "/home", "/root", "/run/user") {
			return nil, nil, fmt.Errorf("%s %q: the service cannot reach /home, /root or /run/user (ProtectHome=yes)", p.flag, p.path)
		}
		if _, err := os.Stat(p.path); p.mustExist && err != nil {
			return nil, nil, fmt.Errorf("%s: %v", p.flag, err)
		}
	}
	if err := takeableDataDir(c.Data); err != nil {
		return nil, nil, err
	}
	var out []string
	fs.Visit(func(f *flag.Flag) { out = append(out, "--"+f.Name+"="+f.Value.String()) })
	return out, &c, nil
}

// takeableDataDir refuses a data directory that holds files but no vmsauth
// database (nor a site box's marker): install gives the whole directory to the service user, which
// must not happen to, say, /srv or /var/lib given by mistake.
func takeableDataDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--data %q: %v", dir, err)
	}
	// A site box's directory has no database file but the site marker.
	if len(entries) == 0 || slices.ContainsFunc(entries, func(e os.DirEntry) bool {
		return e.Name() == databaseFile || e.Name() == siteMarkerFile
	}) {
		return nil
	}
	return fmt.Errorf("--data %q holds files but no %s; install gives the data directory to user %s, so name an empty or new directory, or one a vmsauth service used", dir, databaseFile, serviceAccount)
}

// listenCapabilities is what the service needs to listen on addr: the
// right to bind a port below 1024, or nothing.
func listenCapabilities(addr string) ([]string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %v", addr, err)
	}
	n, err := net.LookupPort("tcp", port)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %v", addr, err)
	}
	if n > 0 && n < 1024 {
		return []string{"CAP_NET_BIND_SERVICE"}, nil
	}
	return nil, nil
}

func underAny(path string, dirs ...string) bool {
	path = filepath.Clean(path)
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// serviceError names the action and, where there is one, the next step.
func serviceError(action string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errUsage):
		return err
	case errors.Is(err, install.ErrNoSystemd):
		return fmt.Errorf("%s: %w; run `vmsauth serve` under your init system instead", action, err)
	case errors.Is(err, install.ErrAlreadyInstalled):
		return fmt.Errorf("%s: %w; run `vmsauth uninstall` first", action, err)
	case errors.Is(err, install.ErrNotInstalled):
		return fmt.Errorf("%s: %w; run `vmsauth install` first", action, err)
	}
	return fmt.Errorf("%s: %w", action, err)
}
