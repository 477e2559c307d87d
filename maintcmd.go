package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"vmsauth/auth"
	"vmsauth/store"
	"vmsauth/web"
)

// oneFileArg parses a command's flags and its single FILE argument.
func oneFileArg(fs *flag.FlagSet, args []string, getenv func(string) string, stderr io.Writer) (string, error) {
	// Let the file come before the flags too: "backup x.db --data /d".
	var file string
	for {
		if err := parseFlags(fs, args, getenv, stderr); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		if file != "" {
			fmt.Fprintf(stderr, "vmsauth %s: one FILE only\n", fs.Name())
			return "", errUsage
		}
		file, args = fs.Arg(0), fs.Args()[1:]
	}
	if file == "" {
		fmt.Fprintf(stderr, "vmsauth %s: FILE is required\n", fs.Name())
		return "", errUsage
	}
	return file, nil
}

// backupCommand writes a consistent copy of the live database to FILE,
// through the running service when it holds the file, and checks the copy
// before reporting success.
func backupCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var dataDir string
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	dataFlag(fs, &dataDir)
	file, err := oneFileArg(fs, args, getenv, stderr)
	if err != nil {
		return err
	}
	live := filepath.Join(dataDir, databaseFile)
	if _, err := os.Stat(live); err != nil {
		return fmt.Errorf("no database to back up: %w", err)
	}
	var copyTo func(io.Writer) error
	db, err := store.Open(live, store.Options{ReadOnly: true})
	switch {
	case errors.Is(err, store.ErrLocked):
		copyTo = func(w io.Writer) error { return backupFromService(ctx, dataDir, w, err) }
	case err != nil:
		return err
	default:
		defer db.Close()
		copyTo = func(w io.Writer) error { _, err := db.Backup(w); return err }
	}
	n, err := writeChecked(file, copyTo)
	if err != nil {
		return err
	}
	if err := giveToDirOwner(dataDir); err != nil { // FILE may be in it
		return err
	}
	fmt.Fprintf(stdout, "Backup written to %s (%d bytes, checked).\n", file, n)
	return nil
}

func backupFromService(ctx context.Context, dataDir string, w io.Writer, locked error) error {
	res, err := ctlDo(ctx, dataDir, http.MethodGet, "/backup", nil, locked)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("the running service refused the backup (HTTP %d)", res.StatusCode)
	}
	_, err = io.Copy(w, res.Body)
	return err
}

// writeChecked writes a database copy to a temp file beside path, opens it
// and walks every page, and only then renames it into place: a backup
// that says it succeeded is whole.
func writeChecked(path string, copyTo func(io.Writer) error) (n int64, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".vmsauth-backup-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err == nil {
		if err = copyTo(f); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if err = checkDatabase(tmp); err != nil {
		return 0, fmt.Errorf("the copy failed its check, nothing written: %w", err)
	}
	st, err := os.Stat(tmp)
	if err != nil {
		return 0, err
	}
	if err = os.Rename(tmp, path); err != nil {
		return 0, err
	}
	return st.Size(), syncDir(filepath.Dir(path))
}

// checkDatabase opens path read-only as a vmsauth database and checks
// every page of it.
func checkDatabase(path string) error {
	db, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Check()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// restoreCommand replaces the database with FILE, which must be a valid
// vmsauth database; the service must be stopped. The replaced database is
// kept beside it.
func restoreCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var dataDir string
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	dataFlag(fs, &dataDir)
	file, err := oneFileArg(fs, args, getenv, stderr)
	if err != nil {
		return err
	}
	if err := checkDatabase(file); err != nil {
		return fmt.Errorf("refusing to restore %s: %w", file, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	live := filepath.Join(dataDir, databaseFile)
	kept := ""
	if _, err := os.Stat(live); err == nil {
		// Hold the lock while swapping, so a service cannot start on a
		// half-restored directory. A live file that will not open for
		// any other reason (damage) is exactly what a restore is for.
		db, err := store.Open(live, store.Options{})
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("the service is running; stop it first (vmsauth stop), then restore")
		}
		if err == nil {
			defer db.Close()
		}
		kept = live + ".before-restore"
		if err := os.Rename(live, kept); err != nil {
			return err
		}
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := web.WriteFileAtomic(live, src, 0o600); err != nil {
		return err
	}
	if err := giveToDirOwner(dataDir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Restored %s into %s.\n", file, live)
	if kept != "" {
		fmt.Fprintf(stdout, "The previous database is kept as %s.\n", kept)
	}
	return nil
}

// auditCommand prints the login audit trail, newest first.
func auditCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	original := append([]string{"audit"}, args...)
	var (
		dataDir, login, since string
		limit                 int
	)
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	dataFlag(fs, &dataDir)
	fs.StringVar(&login, "login", "", "only attempts naming this login")
	fs.StringVar(&since, "since", "", `only attempts since a time ("2026-01-31 08:00:00", "2026-01-31") or for a duration back ("24h")`)
	fs.IntVar(&limit, "limit", 100, "most entries shown (0: all)")
	if err := parseFlags(fs, args, getenv, stderr); err != nil {
		return err
	}
	f := auth.AuditFilter{Login: login, Limit: max(limit, 0)}
	if since != "" {
		if d, err := time.ParseDuration(since); err == nil {
			f.Since = time.Now().Add(-d)
		} else if f.Since, err = web.ParseTime(since); err != nil {
			return fmt.Errorf("--since %q: want YYYY-MM-DD[ HH:MM:SS] or a duration such as 24h", since)
		}
	}
	return withService(ctx, dataDir, auth.Config{}, true, original, stdin, stdout, stderr, func(l *local) error {
		var entries []auth.AuditEntry
		var err error
		if l.audit != nil {
			entries, err = l.audit.Query(f)
		} else {
			entries, err = l.db.Audit(f)
		}
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tIP\tAPI\tLOGIN\tRESULT\tREASON")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%q\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.IP, e.API, e.Login, e.Result, e.Reason)
		}
		return tw.Flush()
	})
}
