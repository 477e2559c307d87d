package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"vmsauth/internal/atomicfile"
	"vmsauth/store"
)

// oneFileArg parses a command's flags and its single FILE argument.
func oneFileArg(fs *flag.FlagSet, args []string, env Env) (string, error) {
	stderr := env.Stderr
	// Let the file come before the flags too: "backup x.db --data /d".
	var file string
	for {
		if err := parseFlags(fs, args, env); err != nil {
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
func backupCommand(ctx context.Context, env Env, args []string) error {
	var dataDir string
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	dataFlag(fs, &dataDir)
	file, err := oneFileArg(fs, args, env)
	if err != nil {
		return err
	}
	if isSiteBox(dataDir) {
		return backupSite(ctx, env, dataDir, file)
	}
	live := filepath.Join(dataDir, databaseFile)
	if _, err := os.Stat(live); err != nil {
		return fmt.Errorf("no database to back up: %w", err)
	}
	var copyTo func(io.Writer) error
	db, err := store.Open(live, store.Options{ReadOnly: true})
	switch {
	case errors.Is(err, store.ErrLocked):
		copyTo = func(w io.Writer) error { return backupFromService(ctx, dataDir, w, err, nil) }
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
	fmt.Fprintf(env.Stdout, "Backup written to %s (%d bytes, checked).\n", file, n)
	return nil
}

// backupSite writes the site a site box serves, read at one revision, as
// an ordinary database file: the running service reads and writes it (it
// alone holds the etcd options and password), and it is checked here as
// any backup is.
func backupSite(ctx context.Context, env Env, dataDir, file string) error {
	var rev string
	n, err := writeChecked(file, func(w io.Writer) error {
		return backupFromService(ctx, dataDir, w, errSiteBox, &rev)
	})
	if err != nil {
		return err
	}
	if err := giveToDirOwner(dataDir); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Backup of the site at etcd revision %s written to %s (%d bytes, checked).\n", rev, file, n)
	fmt.Fprintln(env.Stdout, "It is an ordinary vmsauth database: vmsauth restore takes it on a single box, and vmsauth site init --from takes it into an empty site prefix.")
	return nil
}

// backupFromService copies the running service's backup to w; rev, if
// not nil, gets the site revision it was read at (site boxes).
func backupFromService(ctx context.Context, dataDir string, w io.Writer, locked error, rev *string) error {
	res, err := ctlDo(ctx, dataDir, http.MethodGet, "/backup", nil, locked)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("the running service refused the backup (HTTP %d): %s", res.StatusCode, strings.TrimSpace(string(msg)))
	}
	if rev != nil {
		*rev = res.Header.Get(siteBackupHeader)
	}
	_, err = io.Copy(w, res.Body)
	return err
}

// writeChecked writes a database copy to a temp file beside path, opens it
// and walks every page, and only then renames it into place: a backup
// that says it succeeded is whole.
func writeChecked(path string, copyTo func(io.Writer) error) (int64, error) {
	err := atomicfile.WriteFrom(path, 0o600, copyTo, func(tmp string) error {
		if err := checkDatabase(tmp); err != nil {
			return fmt.Errorf("the copy failed its check, nothing written: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
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

// restoreCommand replaces the database with FILE, which must be a valid
// vmsauth database; the service must be stopped. The replaced database is
// kept beside it.
func restoreCommand(_ context.Context, env Env, args []string) error {
	var dataDir string
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	dataFlag(fs, &dataDir)
	file, err := oneFileArg(fs, args, env)
	if err != nil {
		return err
	}
	if isSiteBox(dataDir) {
		return errors.New("this box serves a site from etcd (serve --etcd): restoring its own file would change nothing it serves; to load a backup into a site, use vmsauth site init --from FILE on an empty prefix")
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
	if err := atomicfile.Write(live, src, 0o600); err != nil {
		return err
	}
	if err := giveToDirOwner(dataDir); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Restored %s into %s.\n", file, live)
	if kept != "" {
		fmt.Fprintf(env.Stdout, "The previous database is kept as %s.\n", kept)
	}
	return nil
}
