//go:build linux

// Command measure reports the figures of the README's Performance section
// that benchmarks cannot give: the size of the release binaries, how long
// `vmsauth serve` takes from its start to its first answered request, and
// how much memory (RSS) it holds with 100k live sessions. It runs the real
// binary on temporary data directories, over HTTPS with its self-signed
// certificate, as installed. It is a tool for people; nothing of it goes
// into the release.
//
//	make release && go run ./tools/measure
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"vmsauth/auth"
	"vmsauth/store"
)

func main() {
	dist := flag.String("dist", "dist", "directory of the release binaries")
	bin := flag.String("bin", "", "binary to run (default: DIST/vmsauth-linux-GOARCH)")
	sessions := flag.Int("sessions", 100_000, "live sessions in the store for the memory figure")
	runs := flag.Int("runs", 5, "starts to time in each case")
	flag.Parse()
	if *bin == "" {
		*bin = filepath.Join(*dist, "vmsauth-linux-"+runtime.GOARCH)
	}
	if err := run(*dist, *bin, *sessions, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "measure:", err)
		os.Exit(1)
	}
}

func run(dist, bin string, sessions, runs int) error {
	tmp, err := os.MkdirTemp("", "vmsauth-measure-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Printf("## Release binaries (%s)\n\n", dist)
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		path := filepath.Join(dist, "vmsauth-linux-"+arch)
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("%w (run make release first)", err)
		}
		fmt.Printf("- %s: %d bytes (%.2f MB, %.2f MiB)\n", path, fi.Size(), float64(fi.Size())/1e6, float64(fi.Size())/(1<<20))
	}

	fmt.Printf("\n## Start to first answer (%s, median and worst of %d)\n\n", bin, runs)
	first, err := timeStarts(bin, runs, func(i int) string { return filepath.Join(tmp, fmt.Sprint("fresh", i)) })
	if err != nil {
		return err
	}
	fmt.Printf("- first start on an empty data directory (makes the certificate and the admin): %s\n", first)
	again, err := timeStarts(bin, runs, func(int) string { return filepath.Join(tmp, "fresh0") })
	if err != nil {
		return err
	}
	fmt.Printf("- restart on that directory: %s\n", again)

	full := filepath.Join(tmp, "full")
	fmt.Fprintf(os.Stderr, "storing %d live sessions...\n", sessions)
	start := time.Now()
	tokens, err := fill(full, sessions)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "stored in %v\n", time.Since(start).Round(time.Second))
	loaded, err := timeStarts(bin, runs, func(int) string { return full })
	if err != nil {
		return err
	}
	fmt.Printf("- restart holding %d live sessions: %s\n", sessions, loaded)

	fmt.Printf("\n## Memory holding %d live sessions\n\n", sessions)
	return memory(bin, full, tokens)
}

// instance is one running `vmsauth serve`.
type instance struct {
	cmd    *exec.Cmd
	url    string
	client *http.Client
	// started is when the process was started; answered when it first
	// answered /healthz.
	started, answered time.Time
	exited            chan error // receives cmd.Wait's result
}

// startServe runs the binary on dir at a free loopback port and returns
// once it has answered /healthz.
func startServe(bin, dir string) (*instance, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--data", dir, "--listen", addr, "--log-level", "warn")
	// A known password keeps the first start from printing one.
	cmd.Env = append(os.Environ(), "VMSAUTH_ADMIN_PASSWORD=measure-admin-1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	in := &instance{cmd: cmd, url: "https://" + addr, exited: make(chan error, 1), client: &http.Client{
		Timeout: 10 * time.Second,
		// The certificate is the box's own self-signed one.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 64},
	}}
	in.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { in.exited <- cmd.Wait() }()
	for {
		res, err := in.client.Get(in.url + "/healthz")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				in.answered = time.Now()
				return in, nil
			}
		}
		select {
		case err := <-in.exited:
			return nil, fmt.Errorf("serve exited before answering (%v):\n%s", err, out.String())
		case <-time.After(time.Millisecond):
		}
		if time.Since(in.started) > 30*time.Second {
			in.stop()
			return nil, fmt.Errorf("serve did not answer within 30 s:\n%s", out.String())
		}
	}
}

// stop ends the instance as systemd would, with SIGTERM.
func (in *instance) stop() error {
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-in.exited:
		return err
	case <-time.After(30 * time.Second):
		_ = in.cmd.Process.Kill()
		return errors.New("serve did not stop within 30 s of SIGTERM")
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// timeStarts starts the binary runs times on dir(i) and returns the median
// and worst time from start to first answer.
func timeStarts(bin string, runs int, dir func(i int) string) (string, error) {
	var times []time.Duration
	for i := range runs {
		in, err := startServe(bin, dir(i))
		if err != nil {
			return "", err
		}
		times = append(times, in.answered.Sub(in.started))
		if err := in.stop(); err != nil {
			return "", err
		}
	}
	slices.Sort(times)
	return fmt.Sprintf("median %v, worst %v", times[len(times)/2].Round(time.Millisecond/10), times[len(times)-1].Round(time.Millisecond/10)), nil
}

// fill makes a data directory whose database holds n live client sessions
// of 1000 users, written as the service writes them (random tokens,
// batched commits), and returns their tokens.
func fill(dir string, n int) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := store.Open(filepath.Join(dir, "vmsauth.db"), store.Options{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	hash, err := bcrypt.GenerateFromPassword([]byte("measure-user-1"), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	users := make([]int64, 1000)
	for i := range users {
		u := &auth.User{
			Login: fmt.Sprintf("camera%d", i), Name: fmt.Sprintf("Camera user %d", i), PasswordHash: string(hash),
			APIs: []auth.API{auth.APIClient}, Permissions: []string{"cameras.view", "archive.view"},
			CreatedAt: now, UpdatedAt: now,
		}
		if err := db.CreateUser(context.Background(), u); err != nil {
			return nil, err
		}
		users[i] = u.ID
	}
	tokens := make([]string, n)
	var next atomic.Int64
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				tokens[i] = randomText(32)
				h := auth.HashToken(tokens[i])
				s := &auth.Session{
					ID: h.SessionID(), TokenHash: h,
					UserID: users[i%len(users)], API: auth.APIClient,
					CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(auth.DefaultClientIdle),
					ClientMeta: auth.ClientMeta{
						IP: fmt.Sprintf("10.1.%d.%d", i/250%250, i%250+1), UserAgent: "Samsung / SM-A525F / 13 / 33 / Android",
						Client: "android", Device: hex.EncodeToString(randomBytes(16)),
					},
				}
				if err := db.CreateSession(context.Background(), s, auth.CreateOptions{Now: now}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return tokens, <-errs
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randomText(n int) string { return base64.RawURLEncoding.EncodeToString(randomBytes(n)) }

// memory prints serve's RSS holding the sessions in dir at each stage of a
// working day: right after start (when the sweep has read every session's
// state), right after token checks and 11 s later (after serve's next
// release of mapped pages), after a /metrics scrape (which counts every
// live session). It does so twice: first with the binary and the database
// in the page cache, as right after fill wrote them, where the kernel maps
// the cached pages of the 64 kB window around every page a process
// touches; then with both dropped from the cache, as after the box boots.
func memory(bin, dir string, tokens []string) error {
	if fi, err := os.Stat(filepath.Join(dir, "vmsauth.db")); err == nil {
		fmt.Printf("- database file: %d bytes (%.1f MB)\n", fi.Size(), float64(fi.Size())/1e6)
	}
	fmt.Println("\nFiles in the page cache (as just written):")
	if err := day(bin, dir, tokens); err != nil {
		return err
	}
	for _, f := range []string{bin, filepath.Join(dir, "vmsauth.db")} {
		if err := uncache(f); err != nil {
			return err
		}
	}
	fmt.Println("\nFiles dropped from the page cache first (as after a boot):")
	return day(bin, dir, tokens)
}

func day(bin, dir string, tokens []string) error {
	in, err := startServe(bin, dir)
	if err != nil {
		return err
	}
	defer in.stop()
	pid := in.cmd.Process.Pid
	// The sweep runs in the background right after the start.
	time.Sleep(2 * time.Second)
	if err := printRSS(pid, "after start and the startup sweep"); err != nil {
		return err
	}
	const checks = 20_000
	if err := verify(in, tokens, checks); err != nil {
		return err
	}
	if err := printRSS(pid, fmt.Sprintf("right after %d token checks of random sessions", checks)); err != nil {
		return err
	}
	// serve gives back the database pages checks mapped every 10 s.
	time.Sleep(11 * time.Second)
	if err := printRSS(pid, "11 s later"); err != nil {
		return err
	}
	res, err := in.client.Get(in.url + "/metrics")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("vmsauth_live_sessions")) {
		return fmt.Errorf("/metrics: status %d", res.StatusCode)
	}
	if err := printRSS(pid, "after a /metrics scrape"); err != nil {
		return err
	}
	// Where the process's own memory goes, as the Go runtime counts it.
	var heap []string
	for line := range strings.Lines(string(body)) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch name {
		case "go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes",
			"go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_next_gc_bytes",
			"go_memstats_sys_bytes":
			v, _ := strconv.ParseFloat(value, 64)
			heap = append(heap, fmt.Sprintf("%s %.0f kB", strings.TrimPrefix(name, "go_memstats_"), v/1024))
		}
	}
	fmt.Printf("  (Go runtime: %s)\n", strings.Join(heap, ", "))
	return nil
}

// uncache drops the file's pages from the page cache, as a reboot would.
// The file must be on disk already (fill and the service fsync).
func uncache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// verify sends n token checks of random sessions from 16 clients.
func verify(in *instance, tokens []string, n int) error {
	var next atomic.Int64
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				req, _ := http.NewRequestWithContext(context.Background(), "GET", in.url+"/auth/verify", nil)
				req.Header.Set("Authorization", "Bearer "+tokens[mrand.IntN(len(tokens))])
				res, err := in.client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("/auth/verify: status %d", res.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// printRSS prints the process's resident memory from /proc: all of it
// (VmRSS), its own memory (RssAnon: Go heap, stacks), the pages of files
// it has mapped (RssFile: the binary and the database, page cache the
// kernel can drop and read again) and of those the database's, and the
// peak (VmHWM).
func printRSS(pid int, when string) error {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	fields := map[string]string{}
	for line := range strings.Lines(string(status)) {
		if name, value, ok := strings.Cut(line, ":"); ok {
			fields[name] = strings.TrimSpace(value)
		}
	}
	db, err := mappedKB(pid, "vmsauth.db")
	if err != nil {
		return err
	}
	fmt.Printf("- %s: VmRSS %s (RssAnon %s, RssFile %s of which the database %d kB), peak VmHWM %s\n",
		when, fields["VmRSS"], fields["RssAnon"], fields["RssFile"], db, fields["VmHWM"])
	return nil
}

// mappedKB sums the resident kB of the process's mappings of files named
// name, from /proc/PID/smaps.
func mappedKB(pid int, name string) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	total, inFile := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-"):
			// A mapping's header: range, perms, offset, device, inode, path.
			inFile = len(fields) == 6 && filepath.Base(fields[5]) == name
		case inFile && len(fields) == 3 && fields[0] == "Rss:":
			var kb int
			fmt.Sscan(fields[1], &kb)
			total += kb
		}
	}
	return total, sc.Err()
}
