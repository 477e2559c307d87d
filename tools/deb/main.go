// Command deb prepares what nfpm needs to package vmsauth as a .deb for
// each of amd64, arm64 and armhf: the systemd unit, rendered by package
// install as `vmsauth install` renders it, and one nfpm configuration per
// architecture pointing at the release binaries, the maintainer scripts and
// the other files beside this source. `make deb` runs it, then nfpm.
//
// nfpm runs as its command at a version pinned in the Makefile, not as a
// library imported here: its library brings about 40 modules into go.mod
// (go-git and its SSH stack, an OpenPGP implementation, sprig) for a
// changelog generator and signing that vmsauth does not use, and `go vet
// ./...` would compile them all on every CI run. The configuration is
// written as JSON, which nfpm's YAML reader takes as it is.
//
//	make release && go run ./tools/deb -describe "$(git describe --tags --always --dirty)" \
//	    -date "$(git log -1 --format=%cI)" -dist dist -out dist/deb-build
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"vmsauth/install"
)

// What the package installs. These agree with installcmd.go, where
// `vmsauth install` gets the same name, user and data directory; the
// container test (deb_test.go) compares the two units.
const (
	name        = "vmsauth"
	description = "vmsauth login and token service"
	executable  = "/usr/bin/vmsauth"
	dataDir     = "/var/lib/vmsauth"
	account     = "vmsauth"
	envFile     = "/etc/default/vmsauth"
	unitPath    = "/lib/systemd/system/vmsauth.service" // Debian 12's place for packaged units
)

// goarch maps Debian's architecture names to the release binaries' suffix
// (dist/vmsauth-linux-<goarch>; arm is built with GOARM=7, Debian's armhf).
var goarch = map[string]string{"amd64": "amd64", "arm64": "arm64", "armhf": "arm"}

func main() {
	describe := flag.String("describe", "", "output of git describe --tags --always --dirty")
	date := flag.String("date", "", "commit time of HEAD, RFC 3339 (git log -1 --format=%cI)")
	dist := flag.String("dist", "dist", "directory holding the release binaries vmsauth-linux-<goarch>")
	out := flag.String("out", "dist/deb-build", "directory for the unit and the nfpm configurations")
	src := flag.String("src", "tools/deb", "directory of the maintainer scripts and the files shipped beside the binary")
	arches := flag.String("arches", "amd64,arm64,armhf", "Debian architectures to configure, separated by spaces or commas")
	maintainer := flag.String("maintainer", "vmsauth maintainers <vmsauth@example.com>", "the package's Maintainer field")
	flag.Parse()
	if err := run(*describe, *date, *dist, *out, *src, strings.FieldsFunc(*arches, func(r rune) bool { return r == ' ' || r == ',' }), *maintainer); err != nil {
		fmt.Fprintln(os.Stderr, "deb:", err)
		os.Exit(1)
	}
}

func run(describe, date, dist, out, src string, arches []string, maintainer string) error {
	when, err := time.Parse(time.RFC3339, date)
	if err != nil {
		return fmt.Errorf("-date %q: want the commit time in RFC 3339 (git log -1 --format=%%cI)", date)
	}
	version, err := debianVersion(describe, when)
	if err != nil {
		return err
	}
	unit, err := Unit()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(src, "postinst")); err != nil {
		return fmt.Errorf("-src: %v", err)
	}
	src = abs(src)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	unitFile := filepath.Join(out, name+".service")
	if err := os.WriteFile(unitFile, []byte(unit), 0o644); err != nil {
		return err
	}
	changes := filepath.Join(out, "changelog.gz")
	if err := os.WriteFile(changes, changelog(version, describe, maintainer, when), 0o644); err != nil {
		return err
	}
	for _, a := range arches {
		if goarch[a] == "" {
			return fmt.Errorf("-arches: %q is none of amd64, arm64, armhf", a)
		}
		bin := filepath.Join(dist, "vmsauth-linux-"+goarch[a])
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%v (run make release first)", err)
		}
		c := config(a, version, maintainer, when, abs(bin), abs(unitFile), abs(changes), src)
		b, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "nfpm-"+a+".json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	fmt.Println(version)
	return nil
}

// Unit is the unit `vmsauth install` would write for /usr/bin/vmsauth with
// no flags, plus the settings file: install's unit has no EnvironmentFile=
// (the installed service takes its settings as flags), and the package's
// takes them from /etc/default/vmsauth. --listen is left to serve's
// default, or VMSAUTH_LISTEN would lose to it; --data stays a flag, since
// the sandbox lets the service write to that directory only.
func Unit() (string, error) {
	unit, err := install.Unit(install.Config{
		Name:        name,
		DisplayName: name,
		Description: description,
		Executable:  executable,
		Args:        []string{"serve", "--data=" + dataDir},
		DataDir:     dataDir,
		User:        account,
	})
	if err != nil {
		return "", err
	}
	if strings.Contains(unit, "\nEnvironmentFile=") {
		return unit, nil
	}
	// The leading "-" lets the service start when the file was deleted.
	const service = "\n[Service]\n"
	if !strings.Contains(unit, service) {
		return "", errors.New("the unit from package install has no [Service] section")
	}
	return strings.Replace(unit, service, service+"EnvironmentFile=-"+envFile+"\n", 1), nil
}

// describeRE splits git describe's output: a tag, then when HEAD is past it
// the count of commits and the abbreviated hash, then "-dirty".
// With no tag it is the abbreviated hash alone, tried first: Go's regexp
// takes the first alternative that matches, and a hash may start with a
// digit as a tag does.
var describeRE = regexp.MustCompile(`^(?:([0-9a-f]{7,40})|v?(\d[0-9A-Za-z.+~-]*?)(?:-(\d+)-g([0-9a-f]{7,40}))?)(-dirty)?$`)

// debianVersion turns git describe's output into a version dpkg orders as
// the commits: tag v1.2.3 is 1.2.3, a pre-release tag v1.2.3-rc1 is
// 1.2.3~rc1 (before 1.2.3), five commits past v1.2.3 is
// 1.2.3+git20261129.5.0198e53, and with no tag at all 0.0.0~git20261129.0198e53.
// The date is the commit's, so rebuilding a commit gives the same version.
// A dirty tree adds ".dirty".
func debianVersion(describe string, commit time.Time) (string, error) {
	m := describeRE.FindStringSubmatch(strings.TrimSpace(describe))
	if m == nil {
		return "", fmt.Errorf("-describe %q: not the output of git describe --tags --always --dirty", describe)
	}
	bare, tag, count, hash, dirty := m[1], m[2], m[3], m[4], m[5]
	day := commit.UTC().Format("20060102")
	var v string
	switch {
	case bare != "":
		v = "0.0.0~git" + day + "." + bare
	case count != "":
		v = debianTag(tag) + "+git" + day + "." + count + "." + hash
	default:
		v = debianTag(tag)
	}
	if dirty != "" {
		v += ".dirty"
	}
	// Debian Policy 5.6.12: an upstream version starts with a digit and
	// holds only alphanumerics and . + ~ (a hyphen would start the revision).
	if !regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]*$`).MatchString(v) {
		return "", fmt.Errorf("-describe %q gives %q, not a Debian version", describe, v)
	}
	return v, nil
}

// debianTag writes a tag's pre-release part after "~", which dpkg sorts
// before the release: 1.2.3-rc1 → 1.2.3~rc1.
func debianTag(tag string) string {
	return strings.ReplaceAll(tag, "-", "~")
}

// changelog is the one entry Debian wants in every package's
// /usr/share/doc (a native package: changelog.gz), in dpkg's format,
// compressed as lintian asks: gzip -9, no name, no time.
func changelog(version, describe, maintainer string, when time.Time) []byte {
	text := fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * Built from git %s.\n\n -- %s  %s\n",
		name, version, strings.TrimSpace(describe), maintainer, when.Format(time.RFC1123Z))
	var b bytes.Buffer
	z, _ := gzip.NewWriterLevel(&b, gzip.BestCompression) // a valid level cannot fail
	z.Write([]byte(text))
	z.Close()
	return b.Bytes()
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// nfpm's configuration, the fields used (nfpm.go, files/files.go of
// github.com/goreleaser/nfpm/v2).
type nfpmConfig struct {
	Name          string    `json:"name"`
	Arch          string    `json:"arch"`
	Platform      string    `json:"platform"`
	Version       string    `json:"version"`
	VersionSchema string    `json:"version_schema"`
	Section       string    `json:"section"`
	Priority      string    `json:"priority"`
	Maintainer    string    `json:"maintainer"`
	Description   string    `json:"description"`
	License       string    `json:"license,omitempty"`
	MTime         time.Time `json:"mtime"`
	Depends       []string  `json:"depends"`
	Contents      []content `json:"contents"`
	Scripts       scripts   `json:"scripts"`
}

type content struct {
	Src      string   `json:"src"`
	Dst      string   `json:"dst"`
	Type     string   `json:"type,omitempty"`
	FileInfo fileInfo `json:"file_info"`
}

type fileInfo struct {
	Mode  os.FileMode `json:"mode"`
	MTime time.Time   `json:"mtime"`
}

type scripts struct {
	PostInstall string `json:"postinstall"`
	PreRemove   string `json:"preremove"`
	PostRemove  string `json:"postremove"`
}

func config(arch, version, maintainer string, when time.Time, bin, unit, changes, src string) nfpmConfig {
	file := func(src, dst string, mode os.FileMode) content {
		return content{Src: src, Dst: dst, FileInfo: fileInfo{Mode: mode, MTime: when}}
	}
	settings := file(filepath.Join(src, "default"), envFile, 0o600)
	// A conffile: an upgrade keeps the administrator's edits, purge deletes it.
	settings.Type = "config"
	return nfpmConfig{
		Name:          name,
		Arch:          arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none", // debianVersion has made it a Debian version already
		Section:       "net",
		Priority:      "optional",
		Maintainer:    maintainer,
		Description: "login and token service for NVR/VMS boxes\n" +
			"The login and token service of an NVR/VMS box: three login APIs (client,\n" +
			"admin, integration) over HTTPS, an admin page, and /auth/verify for a\n" +
			"reverse proxy. One static binary keeping its users in a bbolt file; runs\n" +
			"as the system user vmsauth under a hardened systemd unit.",
		MTime: when,
		// useradd, in the postinst. Every Debian has it (priority required),
		// so apt installs the package with no download.
		Depends: []string{"passwd"},
		Contents: []content{
			file(bin, executable, 0o755),
			file(unit, unitPath, 0o644),
			settings,
			file(filepath.Join(src, "copyright"), "/usr/share/doc/vmsauth/copyright", 0o644),
			file(changes, "/usr/share/doc/vmsauth/changelog.gz", 0o644),
			file(filepath.Join(src, "lintian-overrides"), "/usr/share/lintian/overrides/vmsauth", 0o644),
		},
		Scripts: scripts{
			PostInstall: filepath.Join(src, "postinst"),
			PreRemove:   filepath.Join(src, "prerm"),
			PostRemove:  filepath.Join(src, "postrm"),
		},
	}
}
