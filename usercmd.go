package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"vmsauth/auth"
)

// userCommand runs "vmsauth user SUB ..." on the data directory.
func userCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	original := append([]string{"user"}, args...)
	sub, args := args[0], args[1:]
	var (
		dataDir    string
		cost       int
		login      string
		name       string
		apis       string
		perms      string
		limit      int
		importHash string
	)
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	dataFlag(fs, &dataDir)
	bcryptFlag(fs, &cost)
	fs.StringVar(&login, "login", "", "the user's login")
	if sub == "add" {
		fs.StringVar(&name, "name", "", "display name (default: the login)")
		fs.StringVar(&apis, "api", "client", "APIs the user may use: client,admin,integration")
		fs.StringVar(&perms, "permissions", "", `permissions: comma-separated names, or "all"`)
		fs.IntVar(&limit, "sessions-limit", 0, "most live client sessions (0: the default of 5)")
		fs.StringVar(&importHash, "password-hash", "", "import an existing bcrypt hash ($2a$/$2b$/$2y$) instead of a password")
	}
	// Flags may follow the login ("user show alice --data /x"), so parse
	// repeatedly, collecting positional arguments in between.
	var pos []string
	for {
		if err := parseFlags(fs, args, getenv, stderr); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if login == "" && len(pos) > 0 && sub != "list" {
		login, pos = pos[0], pos[1:]
	}

	readOnly := sub == "list" || sub == "show"
	return withService(ctx, dataDir, auth.Config{BcryptCost: cost}, readOnly, original, stdin, stdout, stderr, func(l *local) error {
		return userRun(ctx, l.svc, sub, login, pos, auth.NewUser{
			Login: login, Name: name, APIs: parseAPIs(apis), Permissions: permissionList(perms),
			SessionsLimit: limit, PasswordHash: importHash,
		}, stdin, stdout, stderr)
	})
}

// userRun executes a parsed user command on an open service.
func userRun(ctx context.Context, svc *auth.Service, sub, login string, pos []string, n auth.NewUser, stdin io.Reader, stdout, stderr io.Writer) error {

	if sub == "list" {
		users, err := svc.Users()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLOGIN\tNAME\tAPIS\tSTATE")
		for _, u := range users {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", u.ID, u.Login, u.Name, joinAPIs(u.APIs), state(u, svc))
		}
		return tw.Flush()
	}
	if login == "" {
		fmt.Fprintf(stderr, "vmsauth user %s: the user's login is required\n", sub)
		return errUsage
	}
	if sub == "add" {
		return addUser(ctx, svc, stdin, stdout, n)
	}

	u, err := svc.UserByLogin(login)
	if errors.Is(err, auth.ErrUserNotFound) {
		return fmt.Errorf("no user with login %q", login)
	}
	if err != nil {
		return err
	}
	switch sub {
	case "show":
		showUser(stdout, svc, u)
		return nil
	case "passwd":
		password, generated, err := readPassword(stdin)
		if err != nil {
			return err
		}
		if _, err := svc.SetPassword(ctx, auth.Root, u.ID, password); err != nil {
			return err
		}
		if generated {
			fmt.Fprintf(stdout, "New password for %s: %s\n", u.Login, password)
		}
		fmt.Fprintf(stdout, "Password of %s changed; their sessions were ended.\n", u.Login)
	case "disable", "enable":
		if _, err := svc.SetDisabled(auth.Root, u.ID, sub == "disable"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is %sd.\n", u.Login, sub)
	case "delete":
		if err := svc.DeleteUser(auth.Root, u.ID); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s deleted.\n", u.Login)
	case "grant", "revoke":
		names := permissionList(strings.Join(pos, ","))
		if len(names) == 0 {
			fmt.Fprintf(stderr, "vmsauth user %s: name the permissions, or \"all\"\n", sub)
			return errUsage
		}
		change := svc.Grant
		if sub == "revoke" {
			change = svc.Revoke
		}
		u, err := change(auth.Root, u.ID, names)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s now has: %s\n", u.Login, strings.Join(u.Permissions, ", "))
	default:
		fmt.Fprintf(stderr, "vmsauth: unknown user command %q\n\n%s", sub, usage)
		return errUsage
	}
	return nil
}

func addUser(ctx context.Context, svc *auth.Service, stdin io.Reader, stdout io.Writer, n auth.NewUser) error {
	generated := false
	if n.PasswordHash == "" {
		var err error
		if n.Password, generated, err = readPassword(stdin); err != nil {
			return err
		}
	}
	u, err := svc.CreateUser(ctx, auth.Root, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Created user %s (id %d).\n", u.Login, u.ID)
	if generated {
		fmt.Fprintf(stdout, "Password: %s\n", n.Password)
	}
	return nil
}

// readPassword takes the first line of stdin when stdin is a pipe or file,
// and otherwise (a terminal, or nothing piped in) generates a password that
// the caller prints. Passwords are never taken from the command line, where
// other users of the box could read them in the process list.
func readPassword(stdin io.Reader) (password string, generated bool, err error) {
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice != 0 {
			stdin = nil
		}
	}
	if stdin != nil {
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, err
		}
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			return line, false, nil
		}
	}
	password, err = auth.GeneratePassword()
	return password, true, err
}

func showUser(w io.Writer, svc *auth.Service, u *auth.User) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%d\n", u.ID)
	fmt.Fprintf(tw, "login\t%s\n", u.Login)
	fmt.Fprintf(tw, "name\t%s\n", u.Name)
	fmt.Fprintf(tw, "apis\t%s\n", joinAPIs(u.APIs))
	fmt.Fprintf(tw, "state\t%s\n", state(u, svc))
	fmt.Fprintf(tw, "sessions limit\t%d\n", u.Limit())
	if u.ExpiredAt != nil {
		fmt.Fprintf(tw, "expires\t%s\n", u.ExpiredAt.Local().Format("2006-01-02 15:04:05"))
	}
	fmt.Fprintf(tw, "permissions\t%s\n", strings.Join(u.Permissions, ", "))
	fmt.Fprintf(tw, "created\t%s\n", u.CreatedAt.Local().Format("2006-01-02 15:04:05"))
	fmt.Fprintf(tw, "updated\t%s\n", u.UpdatedAt.Local().Format("2006-01-02 15:04:05"))
	tw.Flush()
}

func state(u *auth.User, svc *auth.Service) string {
	switch {
	case u.Disabled:
		return "disabled"
	case u.Expired(svc.Now()):
		return "expired"
	}
	return "active"
}

func joinAPIs(apis []auth.API) string {
	s := make([]string, len(apis))
	for i, a := range apis {
		s[i] = string(a)
	}
	return strings.Join(s, ",")
}

// parseAPIs keeps unknown names as they are so that validation in auth
// reports them.
func parseAPIs(s string) []auth.API {
	var out []auth.API
	for _, p := range splitList(s) {
		a, ok := auth.ParseAPI(p)
		if !ok {
			a = auth.API(p)
		}
		out = append(out, a)
	}
	return out
}

// permissionList expands "all" to the whole catalog.
func permissionList(s string) []string {
	var out []string
	for _, p := range splitList(s) {
		if p == "all" {
			return auth.AllPermissionNames()
		}
		out = append(out, p)
	}
	return out
}
