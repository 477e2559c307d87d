//go:build linux

// Command floodcost reports what the floods of issue 13 cost a running box:
// memory (VmRSS and its peak VmHWM), disk (the database file) and log (lines
// and bytes of the service's output), and the audit entries they leave. It
// builds vmsauth, runs `vmsauth serve` on a fresh temporary data directory
// for each flood, over plain HTTP on loopback with the default limits and
// captchas on, and sends each flood from loopback addresses of 127/8 (all
// local). It is a tool for people; nothing of it goes into the release.
//
//	go run ./tools/floodcost
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	only := flag.String("only", "", "run only the flood whose name contains this")
	src := flag.String("src", ".", "the vmsauth source tree to build (e.g. an older version's)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "floodcost")
	check(err)
	defer os.RemoveAll(dir)
	bin, err := filepath.Abs(filepath.Join(dir, "vmsauth"))
	check(err)
	build := exec.Command("go", "build", "-trimpath", "-tags", "nomsgpack", "-ldflags", "-s -w", "-o", bin, ".")
	build.Dir, build.Stderr = *src, os.Stderr
	check(build.Run())

	fmt.Println("| flood | requests | answers | RSS before → after (peak; RssAnon, Go heap) | database | log | audit entries |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, f := range floods {
		if !strings.Contains(f.name, *only) {
			continue
		}
		run(bin, filepath.Join(dir, strconv.Itoa(len(f.name))+"-"+f.name[:4]), f)
	}
}

// flood is one case: addrs source addresses each sending perAddr requests
// made by req (address index, request index).
type flood struct {
	name           string
	addrs, perAddr int
	req            func(base string, a, i int) *http.Request
}

var long = strings.Repeat("a", 60_000)

func login(base, login string) *http.Request {
	body := fmt.Sprintf(`{"login":%q,"password":"wrong-password","captcha":"00000","key":"no-such-key"}`, login)
	req, _ := http.NewRequest("POST", base+"/api/v1/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

var floods = []flood{
	{"105 000 logins from one address", 1, 105_000, func(base string, _, _ int) *http.Request { return login(base, "admin") }},
	{"2 000 logins naming a 60 KB login, one address", 1, 2_000, func(base string, _, _ int) *http.Request { return login(base, long) }},
	{"10 000 junk logins from 1 000 addresses", 1_000, 10, func(base string, a, i int) *http.Request {
		return login(base, fmt.Sprintf("junk-%d-%d", a, i))
	}},
	{"100 000 junk logins from 10 000 addresses (full table)", 10_000, 10, func(base string, a, i int) *http.Request {
		return login(base, fmt.Sprintf("junk-%d-%d", a, i))
	}},
	{"20 000 captcha requests from one address", 1, 20_000, func(base string, _, _ int) *http.Request {
		req, _ := http.NewRequest("GET", base+"/api/v1/captcha", nil)
		return req
	}},
}

func run(bin, data string, f flood) {
	check(os.MkdirAll(data, 0o700))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	addr := ln.Addr().String()
	ln.Close()
	var logBuf counter
	cmd := exec.Command(bin, "serve", "--data", data, "--listen", addr, "--insecure-http")
	cmd.Env = append(os.Environ(), "VMSAUTH_ADMIN_PASSWORD=floodcost-admin-1")
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	check(cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	base := "http://" + addr
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if res, err := http.Get(base + "/healthz"); err == nil {
			res.Body.Close()
			break
		}
		if time.Since(start) > 10*time.Second {
			panic("serve did not start")
		}
	}
	time.Sleep(1500 * time.Millisecond) // the first audit flush and sweep
	db := filepath.Join(data, "vmsauth.db")
	dbBefore, rssBefore := size(db), status(cmd.Process.Pid, "VmRSS")
	linesBefore, bytesBefore := logBuf.get()

	answers := send(base, f)
	time.Sleep(2500 * time.Millisecond) // the audit trail is written about once a second
	lines, bytes := logBuf.get()
	entries := audit(bin, data)
	fmt.Printf("| %s | %d | %s | %s → %s (%s; own %s, Go heap %s) | %s → %s | %d lines, %s | %s |\n",
		f.name, f.addrs*f.perAddr, answers, mb(rssBefore), mb(status(cmd.Process.Pid, "VmRSS")), mb(status(cmd.Process.Pid, "VmHWM")),
		mb(status(cmd.Process.Pid, "RssAnon")), mb(heap(base)),
		mb(dbBefore), mb(size(db)), lines-linesBefore, mb(int64(bytes-bytesBefore)), entries)
}

// send runs the flood from 32 clients at once, each address on
// connections of its own, and sums the answers by status.
func send(base string, f flood) string {
	var mu sync.Mutex
	codes := map[int]int{}
	next := make(chan int)
	var wg sync.WaitGroup
	var errs atomic.Int64
	per := f.perAddr
	if f.addrs == 1 {
		per /= 32 // one address, 32 connections
	}
	for range 32 {
		wg.Go(func() {
			for a := range next {
				ip := net.IPv4(127, byte(1+a/62500), byte(a/250%250), byte(a%250+1))
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
				tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1}
				c := &http.Client{Transport: tr}
				for i := range per {
					res, err := c.Do(f.req(base, a, i))
					if err != nil {
						errs.Add(1)
						continue
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					mu.Lock()
					codes[res.StatusCode]++
					mu.Unlock()
				}
				tr.CloseIdleConnections()
			}
		})
	}
	if f.addrs == 1 {
		for range 32 {
			next <- 0
		}
	} else {
		for a := range f.addrs {
			next <- a
		}
	}
	close(next)
	wg.Wait()
	var out []string
	for _, code := range []int{200, 422, 429} {
		if codes[code] > 0 {
			out = append(out, fmt.Sprintf("%d× %d", codes[code], code))
		}
	}
	if n := errs.Load(); n > 0 {
		out = append(out, fmt.Sprintf("%d errors", n))
	}
	return strings.Join(out, ", ")
}

// audit counts the trail's entries by kind through the running service.
func audit(bin, data string) string {
	out, err := exec.CommandContext(context.Background(), bin, "audit", "--data", data, "--limit", "0").Output()
	check(err)
	var all, throttled int
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		all++
		if strings.Contains(sc.Text(), "throttled") {
			throttled++
		}
	}
	return fmt.Sprintf("%d (%d about throttling)", max(all-1, 0), throttled)
}

// heap is the service's Go heap in use, from its /metrics.
func heap(base string) int64 {
	res, err := http.Get(base + "/metrics")
	check(err)
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int64(n)
		}
	}
	return 0
}

// counter counts the lines and bytes written to it.
type counter struct {
	mu           sync.Mutex
	lines, bytes int
}

func (c *counter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.lines += bytes.Count(p, []byte{'\n'})
	c.bytes += len(p)
	c.mu.Unlock()
	return len(p), nil
}

func (c *counter) get() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines, c.bytes
}

func size(path string) int64 {
	st, err := os.Stat(path)
	check(err)
	return st.Size()
}

// status reads a /proc/PID/status field in bytes.
func status(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mb(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
