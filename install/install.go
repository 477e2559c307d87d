// Package install registers a program as a systemd service through
// kardianos/service, with a hardened unit of our own rather than the
// library's (which restarts after 120 s, reads /etc/sysconfig and leaves
// environment values unquoted).
//
// The library finds systemd and starts, stops, queries and removes the
// unit. Writing it is done here, with the same two systemctl calls the
// library makes, because the library renders units with text/template:
// once any template execution is reachable, the Go linker must keep every
// exported method of every type held in an interface (text/template finds
// methods by name at run time), which drags Gin's unused renderers and
// HTTP/3 server into the binary, 12.6 MB → 18.9 MB. For the same reason
// Unit builds the text without text/template.
//
// It is a leaf: it knows nothing of vmsauth's flags or storage. The caller
// hands it the executable, the arguments, already validated, the data
// directory, the system user to run as and the capabilities the arguments
// need. Install creates that user (or reuses it) and gives it the data
// directory; the unit keeps the service to that directory, that user and
// those capabilities. It never runs the program: systemd starts the
// executable directly, and the program itself must stop cleanly on SIGTERM.
package install

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kardianos/service"

	"vmsauth/internal/atomicfile"
)

// Config describes the service. Name, Executable, Args and DataDir are
// needed only to install; the other actions need just Name.
type Config struct {
	Name        string   // unit name without ".service", e.g. "vmsauth"
	DisplayName string   // human name, used in messages
	Description string   // the unit's Description=
	Executable  string   // absolute path of the program
	Args        []string // arguments after the executable
	DataDir     string   // absolute; the only path the service may write
	UserService bool     // a per-user unit under $HOME/.config/systemd/user: no root needed (tests)

	// User is the system account the service runs as. Install creates it
	// (a system account with no login shell) unless it exists, and makes
	// it the owner of DataDir and everything in it. Empty runs the service
	// as whoever runs the manager: root, or the user of a user unit.
	User string
	// Capabilities are all the service may hold, e.g. CAP_NET_BIND_SERVICE
	// to listen on a port below 1024; none when empty.
	Capabilities []string
	// Reads are files outside DataDir the service must read (a TLS
	// certificate and key): Install refuses when User could not.
	Reads []string

	// IsRoot and HasSystemd look at the host; nil means the real checks.
	// They are here so tests can run without root and without systemd.
	IsRoot     func() bool
	HasSystemd func() bool
}

// systemdMarker exists only when systemd is the running init system
// (the check sd_booted(3) makes).
const systemdMarker = "/run/systemd/system"

var (
	ErrNoSystemd        = errors.New("no systemd on this host (" + systemdMarker + " is missing)")
	ErrNotRoot          = errors.New("needs root (run it with sudo)")
	ErrAlreadyInstalled = errors.New("already installed")
	ErrNotInstalled     = errors.New("not installed")
	// ErrPackaged: the unit came with the vmsauth package, which owns it.
	ErrPackaged = errors.New("installed by the vmsauth package")
)

// Where systemd units live. systemUnitDir is where install writes one;
// packageUnitDirs are where a package (the .deb) puts its own, which
// start, stop, restart and status act on too but install and uninstall
// leave to the package manager. Variables so tests can point them at a
// temporary directory.
var (
	systemUnitDir   = "/etc/systemd/system"
	packageUnitDirs = []string{"/lib/systemd/system", "/usr/lib/systemd/system"}
)

// Status is what Service.Status reports.
type Status int

const (
	NotInstalled Status = iota
	Stopped
	Running
)

func (s Status) String() string {
	switch s {
	case Running:
		return "running"
	case Stopped:
		return "stopped"
	}
	return "not installed"
}

// Service manages one systemd unit.
type Service struct {
	cfg Config
	sys service.System  // the library's systemd implementation
	svc service.Service // the library's handle on the unit
}

// New checks that the host runs systemd and prepares the unit's manager.
// It changes nothing on the host.
func New(c Config) (*Service, error) {
	if c.Name == "" {
		return nil, errors.New("install: Config.Name is required")
	}
	hasSystemd := c.HasSystemd
	if hasSystemd == nil {
		hasSystemd = func() bool { _, err := os.Stat(systemdMarker); return err == nil }
	}
	if !hasSystemd() {
		return nil, ErrNoSystemd
	}
	// The library picks its init system by detection, which sees SysV in
	// a container that has a systemctl binary; we have already decided
	// it is systemd, so take that implementation by name.
	for _, sys := range service.AvailableSystems() {
		if sys.String() == "linux-systemd" {
			s := &Service{cfg: c, sys: sys}
			var err error
			s.svc, err = s.lib()
			return s, err
		}
	}
	return nil, ErrNoSystemd
}

// lib makes the library's handle on the unit.
func (s *Service) lib() (service.Service, error) {
	opt := service.KeyValue{"UserService": s.cfg.UserService}
	return s.sys.New(noop{}, &service.Config{
		Name:        s.cfg.Name,
		DisplayName: s.cfg.DisplayName,
		Description: s.cfg.Description,
		Executable:  s.cfg.Executable,
		Arguments:   s.cfg.Args,
		Option:      opt,
	})
}

// noop is the library's Program. It is never run: systemd starts the
// executable itself, so Start and Stop have nothing to do.
type noop struct{}

func (noop) Start(service.Service) error { return nil }
func (noop) Stop(service.Service) error  { return nil }

// UnitPath is where the unit file lives. It must match the library's
// choice (service_systemd_linux.go, configPath).
func (s *Service) UnitPath() (string, error) {
	name := s.cfg.Name + ".service"
	if !s.cfg.UserService {
		return filepath.Join(systemUnitDir, name), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config/systemd/user", name), nil
}

// Install writes the unit, enables it and reloads systemd; it does not
// start the service. On any failure after the unit was written it takes
// the unit away again, so a retry starts clean.
func (s *Service) Install() error {
	if err := s.needRoot(); err != nil {
		return err
	}
	unit, err := Unit(s.cfg)
	if err != nil {
		return err
	}
	path, err := s.installed()
	switch {
	case err == nil:
		return fmt.Errorf("%w (%s)", ErrAlreadyInstalled, path)
	case errors.Is(err, ErrPackaged):
		return fmt.Errorf("%w; its settings are in /etc/default/vmsauth, and systemctl or vmsauth start/stop/status run it", err)
	case !errors.Is(err, ErrNotInstalled):
		return err
	}
	// The account comes first: when it cannot be made, or cannot read
	// what the service needs, nothing else has been written.
	var owner *account
	if s.cfg.User != "" {
		if owner, err = ensureUser(s.cfg.User, s.cfg.DataDir); err != nil {
			return fmt.Errorf("the service user %s: %v; nothing was installed", s.cfg.User, err)
		}
		for _, f := range s.cfg.Reads {
			if within(f, s.cfg.DataDir) {
				continue // given to the user below
			}
			if err := owner.canRead(f); err != nil {
				return fmt.Errorf("%v; nothing was installed", err)
			}
		}
	}
	if err := writeUnit(path, unit); err != nil {
		return fmt.Errorf("writing %s: %v; nothing was installed", path, err)
	}
	for _, args := range [][]string{{"enable", s.cfg.Name + ".service"}, {"daemon-reload"}} {
		if err := s.systemctl(args...); err != nil {
			s.rollback(path)
			return fmt.Errorf("registering %s with systemctl: %v; nothing was installed", path, err)
		}
	}
	// ProtectSystem=strict makes everything but the data directory read
	// only, and systemd refuses to start a unit whose ReadWritePaths is
	// missing; StateDirectory creates the default one at start.
	if stateDirectory(s.cfg) == "" {
		if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
			s.rollback(path)
			return fmt.Errorf("creating the data directory: %v; nothing was installed", err)
		}
	}
	// A data directory left by a version that ran as root would be
	// unreadable to the new service: take it over, files and all.
	if owner != nil {
		if err := owner.takeOver(s.cfg.DataDir); err != nil {
			s.rollback(path)
			return fmt.Errorf("giving %s to user %s: %v; nothing was installed", s.cfg.DataDir, s.cfg.User, err)
		}
	}
	return nil
}

// systemctl runs one systemctl command as the library would, with --user
// after the verb for a user service.
func (s *Service) systemctl(args ...string) error {
	if s.cfg.UserService {
		args = append([]string{args[0], "--user"}, args[1:]...)
	}
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// writeUnit writes the unit whole or not at all (atomicfile), so a power
// cut during install leaves no half unit for systemd to load at boot.
func writeUnit(path, unit string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(unit), 0o644)
}

// rollback undoes a failed install as far as it can, so that the next
// install does not stop at "already installed".
func (s *Service) rollback(path string) {
	_ = s.svc.Uninstall() // disables; may fail where enable failed
	_ = os.Remove(path)
}

// Uninstall stops the service, disables it and removes the unit. The data
// directory is kept.
func (s *Service) Uninstall() error {
	if err := s.needRoot(); err != nil {
		return err
	}
	if _, err := s.installed(); errors.Is(err, ErrPackaged) {
		return fmt.Errorf("%w; remove it with: apt remove vmsauth (the data is kept)", err)
	} else if err != nil {
		return err
	}
	// A running service would outlive its unit; a stop that fails
	// (already stopped, or failed) must not block the removal.
	_ = s.svc.Stop()
	if err := s.svc.Uninstall(); err != nil {
		return fmt.Errorf("systemctl disable %s.service: %v", s.cfg.Name, err)
	}
	return nil
}

// Start, Stop and Restart ask systemd to act on the unit.
func (s *Service) Start() error   { return s.act("start", s.svc.Start) }
func (s *Service) Stop() error    { return s.act("stop", s.svc.Stop) }
func (s *Service) Restart() error { return s.act("restart", s.svc.Restart) }

func (s *Service) act(name string, f func() error) error {
	if err := s.needRoot(); err != nil {
		return err
	}
	if _, err := s.installed(); err != nil && !errors.Is(err, ErrPackaged) {
		return err
	}
	if err := f(); err != nil {
		// The library drops systemctl's own message, so point at where
		// the reason is.
		return fmt.Errorf("systemctl %s %s.service: %v (see systemctl status %[2]s and journalctl -u %[2]s)", name, s.cfg.Name, err)
	}
	return nil
}

// Status reports whether the unit is installed and running. It needs no
// root. A unit in systemd's failed state is an error saying so.
func (s *Service) Status() (Status, error) {
	if _, err := s.installed(); errors.Is(err, ErrNotInstalled) {
		return NotInstalled, nil
	} else if err != nil && !errors.Is(err, ErrPackaged) {
		return NotInstalled, err
	}
	st, err := s.svc.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		return NotInstalled, nil
	case err != nil:
		return NotInstalled, err
	case st == service.StatusRunning:
		return Running, nil
	}
	return Stopped, nil
}

// installed returns the path of the unit install writes when it is there
// (nil error). Otherwise: ErrPackaged, with the package's unit path, when
// only a package's unit is there; ErrNotInstalled when there is none. The
// mask that apt remove leaves in place of the unit (a link to /dev/null)
// is no unit: install writes over it.
func (s *Service) installed() (string, error) {
	path, err := s.UnitPath()
	if err != nil {
		return "", err
	}
	switch target, err := os.Readlink(path); {
	case err == nil && target == os.DevNull: // masked
	case errors.Is(err, os.ErrNotExist):
	default:
		// A regular file (Readlink says EINVAL) or a link to one.
		if _, err := os.Stat(path); err != nil {
			return path, err
		}
		return path, nil
	}
	if !s.cfg.UserService {
		for _, dir := range packageUnitDirs {
			p := filepath.Join(dir, s.cfg.Name+".service")
			if _, err := os.Stat(p); err == nil {
				return p, fmt.Errorf("%w (%s)", ErrPackaged, p)
			}
		}
	}
	return path, ErrNotInstalled
}

func (s *Service) needRoot() error {
	if s.cfg.UserService {
		return nil
	}
	isRoot := s.cfg.IsRoot
	if isRoot == nil {
		isRoot = func() bool { return os.Geteuid() == 0 }
	}
	if !isRoot() {
		return ErrNotRoot
	}
	return nil
}

// Unit renders the systemd unit for c. It refuses values that cannot be
// written into a unit safely: control characters (a newline would end the
// line).
func Unit(c Config) (string, error) {
	if !filepath.IsAbs(c.Executable) {
		return "", fmt.Errorf("executable %q: want an absolute path", c.Executable)
	}
	if !filepath.IsAbs(c.DataDir) {
		return "", fmt.Errorf("data directory %q: want an absolute path", c.DataDir)
	}
	for _, v := range append([]string{c.Name, c.Description, c.Executable, c.DataDir}, c.Args...) {
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return "", fmt.Errorf("%q cannot be written into a systemd unit (control character)", v)
		}
	}
	exec := []string{quotePath(c.Executable)}
	for _, a := range c.Args {
		exec = append(exec, quoteArg(a))
	}
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("[Unit]")
	line("Description=%s", escapeText(c.Description))
	line("After=network-online.target")
	line("Wants=network-online.target")
	line("")
	line("[Service]")
	if c.User != "" {
		line("User=%s", c.User)
		line("Group=%s", c.User)
	}
	line("ExecStart=%s", strings.Join(exec, " "))
	line("Restart=on-failure")
	line("RestartSec=5")
	// vmsauth exits 3 on a damaged database: restarting cannot help, and
	// every restart would only repeat the message. systemd stops there and
	// the unit shows failed until someone restores a backup.
	line("RestartPreventExitStatus=3")
	line("LimitNOFILE=65536")
	line("UMask=0077")
	line("NoNewPrivileges=yes")
	line("PrivateTmp=yes")
	line("ProtectHome=yes")
	line("ProtectSystem=strict")
	line("ReadWritePaths=%s", quotePath(c.DataDir))
	if dir := stateDirectory(c); dir != "" {
		line("StateDirectory=%s", dir)
		line("StateDirectoryMode=0700")
	}
	hardening(line, c.Capabilities)
	line("")
	line("[Install]")
	if c.UserService {
		line("WantedBy=default.target")
	} else {
		line("WantedBy=multi-user.target")
	}
	return b.String(), nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// hardening writes the sandbox that systemd-analyze security asks for, as
// far as the service can live with it (README, "Install on a box", has
// the figure). Each setting takes away something vmsauth never does.
func hardening(line func(string, ...any), caps []string) {
	// Without capabilities the service needs nothing of the host's users,
	// so it gets a user namespace of its own. A capability held inside
	// such a namespace does not count for the host's network, where a port
	// below 1024 is bound, so that case keeps the host's.
	line("CapabilityBoundingSet=%s", strings.Join(caps, " "))
	if len(caps) > 0 {
		line("AmbientCapabilities=%s", strings.Join(caps, " "))
	} else {
		line("PrivateUsers=yes")
	}
	for _, s := range []string{
		"PrivateDevices=yes",
		"DevicePolicy=closed",
		"ProtectKernelTunables=yes",
		"ProtectKernelModules=yes",
		"ProtectKernelLogs=yes",
		"ProtectControlGroups=yes",
		"ProtectClock=yes",
		"ProtectHostname=yes",
		"ProtectProc=invisible",
		"ProcSubset=pid",
		"LockPersonality=yes",
		"MemoryDenyWriteExecute=yes",
		"RestrictNamespaces=yes",
		"RestrictRealtime=yes",
		"RestrictSUIDSGID=yes",
		"RemoveIPC=yes",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
		"SystemCallArchitectures=native",
		// @system-service keeps setpriority and sched_setscheduler, with
		// which the bcrypt workers lower their own priority, and madvise,
		// with which the store gives pages back. A call outside the list
		// fails with EPERM instead of killing the process.
		"SystemCallFilter=@system-service",
		"SystemCallFilter=~@privileged",
		"SystemCallErrorNumber=EPERM",
	} {
		line("%s", s)
	}
}

// stateDirectory is the unit's StateDirectory= when the data lives in
// systemd's own place for it, /var/lib/<name>; systemd then creates it.
func stateDirectory(c Config) string {
	if filepath.Clean(c.DataDir) == "/var/lib/"+c.Name {
		return c.Name
	}
	return ""
}

// escapeText escapes systemd's specifiers: "%" starts one (%n, %h, ...).
func escapeText(s string) string {
	return strings.ReplaceAll(s, "%", "%%")
}

// quotePath quotes a path for ExecStart's program or ReadWritePaths:
// double quotes, with '\' and '"' backslash-escaped and '%' doubled.
func quotePath(s string) string {
	s = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
	return `"` + escapeText(s) + `"`
}

// quoteArg quotes an ExecStart argument. Beyond quotePath, systemd
// expands $VAR and ${VAR} in arguments (not in the program path), so a
// literal '$' is written "$$".
func quoteArg(s string) string {
	return quotePath(strings.ReplaceAll(s, "$", "$$"))
}
