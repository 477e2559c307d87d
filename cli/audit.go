package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"vmsauth/auth"
	"vmsauth/web"
)

// auditCommand prints the login audit trail, newest first.
func auditCommand(ctx context.Context, env Env, args []string) error {
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
	if err := parseFlags(fs, args, env); err != nil {
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
	return withService(ctx, env, dataDir, auth.Config{}, true, original, func(l *local) error {
		var entries []auth.AuditEntry
		var err error
		if l.audit != nil {
			entries, err = l.audit.Query(ctx, f)
		} else {
			entries, err = l.db.Audit(ctx, f)
		}
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tIP\tAPI\tLOGIN\tRESULT\tREASON")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%q\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.IP, e.API, e.Login, e.Result, e.Reason)
		}
		return tw.Flush()
	})
}
