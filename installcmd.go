package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"vmsauth/install"
)

// serviceDataDir is where the installed service keeps its data unless
// --data says otherwise; systemd's StateDirectory for the unit.
const serviceDataDir = "/var/lib/vmsauth"

// Tests set these to install a user unit against a fake systemctl, without
// root and without systemd; false and nil mean the real host.
var (
	serviceUser       bool
	serviceIsRoot     func() bool
	serviceHasSystemd func() bool
)

// serviceCommand manages the system service: install registers
// `vmsauth serve` with the given flags, the others act on that unit.
// getenv is not consulted: the service will not see this shell's
// environment, so install checks the flags without it too.
func serviceCommand(action string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := install.Config{
		Name:        "vmsauth",
		DisplayName: "vmsauth",
		Description: "vmsauth login and token service",
		UserService: serviceUser,
		IsRoot:      serviceIsRoot,
		HasSystemd:  serviceHasSystemd,
	}
	if action == "install" {
		serveArgs, data, err := installArgs(args, stderr)
		if err != nil {
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
		cfg.Executable, cfg.Args, cfg.DataDir = exe, append([]string{"serve"}, serveArgs...), data
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
			fmt.Fprintf(stdout, "installed %s (data in %s); start it with: vmsauth start\n", path, cfg.DataDir)
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
// and the data directory.
func installArgs(args []string, stderr io.Writer) ([]string, string, error) {
	var c config
	fs := serveFlags(&c)
	noEnv := func(string) string { return "" }
	if err := parseFlags(fs, args, noEnv, stderr); err != nil {
		return nil, "", err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["print-config"] {
		return nil, "", errors.New("--print-config is not a service option")
	}
	if !given["data"] {
		c.Data = serviceDataDir
	}
	// Set marks the flag as given, so the loop below writes it out.
	if err := fs.Set("data", filepath.Clean(c.Data)); err != nil {
		return nil, "", err
	}
	if err := c.validate(); err != nil {
		return nil, "", err
	}
	// The unit runs with / as working directory and ProtectHome=yes, and
	// a missing certificate would only show at boot.
	for _, p := range []struct {
		flag, path string
		mustExist  bool
	}{{"--data", c.Data, false}, {"--tls-cert", c.TLSCert, true}, {"--tls-key", c.TLSKey, true}} {
		if p.path == "" {
			continue
		}
		if !filepath.IsAbs(p.path) {
			return nil, "", fmt.Errorf("%s %q: the service needs an absolute path", p.flag, p.path)
		}
		if underAny(p.path, "/home", "/root", "/run/user") {
			return nil, "", fmt.Errorf("%s %q: the service cannot reach /home, /root or /run/user (ProtectHome=yes)", p.flag, p.path)
		}
		if _, err := os.Stat(p.path); p.mustExist && err != nil {
			return nil, "", fmt.Errorf("%s: %v", p.flag, err)
		}
	}
	var out []string
	fs.Visit(func(f *flag.Flag) { out = append(out, "--"+f.Name+"="+f.Value.String()) })
	return out, c.Data, nil
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
