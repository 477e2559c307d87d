package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// account is the service's system user.
type account struct {
	name     string
	uid, gid int
}

// ensureUser returns the system user name, creating it when it is missing:
// a system account (uid below the login range), in a group of its own
// name, with home (not created) as home directory and no login shell. It
// is made with the OS's own tool, useradd (shadow's, on Debian, Ubuntu,
// RHEL, SUSE, Arch), or where that is missing with systemd-sysusers, which
// every host that can run the unit has. An existing account is reused; root
// is refused, since running as root is what the user is there to avoid.
func ensureUser(name, home string) (*account, error) {
	a, err := lookupUser(name)
	var unknown user.UnknownUserError
	if err == nil || !errors.As(err, &unknown) {
		return a, err
	}
	if path, lerr := exec.LookPath("useradd"); lerr == nil {
		args := []string{"--system", "--home-dir", home, "--no-create-home", "--shell", nologin(), "--comment", name + " service"}
		// A group of that name without the user (left by an earlier
		// removal) makes --user-group fail: join it instead.
		if _, gerr := user.LookupGroup(name); gerr == nil {
			args = append(args, "--gid", name)
		} else {
			args = append(args, "--user-group")
		}
		err = runTool(path, nil, append(args, name)...)
	} else if path, lerr := exec.LookPath("systemd-sysusers"); lerr == nil {
		line := fmt.Sprintf("u %s - \"%s service\" %s %s\n", name, name, home, nologin())
		err = runTool(path, strings.NewReader(line), "-")
	} else {
		return nil, fmt.Errorf("no account %s, and neither useradd nor systemd-sysusers to create it: create a system user %[1]s without login shell, then install again", name)
	}
	if err != nil {
		return nil, err
	}
	return lookupUser(name)
}

func lookupUser(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("account %s: %v", name, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("account %s has uid 0 (root); the service must not run as root", name)
	}
	return &account{name: name, uid: uid, gid: gid}, nil
}

// nologin is the shell of an account nobody logs in to.
func nologin() string {
	for _, p := range []string{"/usr/sbin/nologin", "/sbin/nologin"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/bin/false"
}

func runTool(path string, stdin *strings.Reader, args ...string) error {
	cmd := exec.Command(path, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(path), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// takeOver gives dir and everything below it to the account. Symbolic links
// are not followed: a link in the directory must not hand the account a
// file elsewhere.
func (a *account) takeOver(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil // systemd makes the StateDirectory, owned by User=
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == a.uid && int(st.Gid) == a.gid {
			return nil
		}
		return os.Lchown(path, a.uid, a.gid)
	})
}

// canRead checks, from the permission bits, that the account may read
// path: the owner, its own group, or everyone. Other groups do not count:
// the unit gives the service a user namespace where they are unmapped.
func (a *account) canRead(path string) error {
	path = filepath.Clean(path)
	for p := path; ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		need := os.FileMode(0o4) // read the file
		if p != path {
			need = 0o1 // search the directories above it
		}
		if !a.may(info, need) {
			return fmt.Errorf("%s: the service user %s cannot read it (%s is owned by uid %d, mode %v); give it to %[2]s or make it readable", path, a.name, p, owner(info), info.Mode().Perm())
		}
		if p == "/" {
			return nil
		}
	}
}

func owner(info os.FileInfo) uint32 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}

// may reports whether the account gets the permission bit need (in the
// "other" position) on a file with info.
func (a *account) may(info os.FileInfo, need os.FileMode) bool {
	perm := info.Mode().Perm()
	st, ok := info.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return true // nothing to judge by; the service will say
	case int(st.Uid) == a.uid:
		return perm&(need<<6) != 0
	case int(st.Gid) == a.gid:
		return perm&(need<<3) != 0
	}
	return perm&need != 0
}
