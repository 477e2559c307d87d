//go:build linux

package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vmsauth/etcd"
)

// The commands of the README's "Several boxes" guide that make the site's
// etcd certificates, as an installer types them (only NAME and IP differ).
const (
	caScript = `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca-key.pem -out ca.pem -days 3650 -subj "/CN=vmsauth site etcd CA"
`
	memberScript = `openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout $NAME-key.pem -out $NAME.csr -subj "/CN=$NAME"
printf 'subjectAltName=IP:%s,IP:127.0.0.1\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' $IP > $NAME.ext
openssl x509 -req -in $NAME.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
  -days 3650 -extfile $NAME.ext -out $NAME.pem
`
	clientScript = `openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout $NAME-key.pem -out $NAME.csr -subj "/CN=$NAME"
printf 'keyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' > $NAME.ext
openssl x509 -req -in $NAME.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
  -days 3650 -extfile $NAME.ext -out $NAME.pem
`
)

// script runs shell commands in dir with the variables in env.
func script(t *testing.T, dir, text string, env ...string) {
	t.Helper()
	cmd := exec.Command("sh", "-e", "-c", text)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s\n%s", err, out, text)
	}
}

func needTools(t *testing.T) string {
	t.Helper()
	etcdBin, err := exec.LookPath("etcd")
	if err == nil {
		_, err = exec.LookPath("openssl")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v: CI must run this test (apt-get install etcd-server openssl)", err)
		}
		t.Skipf("%v (apt-get install etcd-server openssl)", err)
	}
	return etcdBin
}

// tlsMembers gives each member the README's TLS options: clients and peers
// over https, each side asking the other for a certificate from the CA.
func tlsMembers(pki string, names []string) memberArgs {
	return func(i int) []string {
		cert, key, ca := filepath.Join(pki, names[i]+".pem"), filepath.Join(pki, names[i]+"-key.pem"), filepath.Join(pki, "ca.pem")
		return []string{"--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth"}
	}
}

// configScript writes a member's /etc/default/etcd, as the README's guide
// does on each member after NAME=... IP=...
const configScript = `cat > /etc/default/etcd <<EOF
ETCD_NAME=$NAME
ETCD_LISTEN_CLIENT_URLS=https://$IP:2379
ETCD_ADVERTISE_CLIENT_URLS=https://$IP:2379
ETCD_LISTEN_PEER_URLS=https://$IP:2380
ETCD_INITIAL_ADVERTISE_PEER_URLS=https://$IP:2380
ETCD_INITIAL_CLUSTER=etcd1=https://10.0.0.5:2380,etcd2=https://10.0.0.6:2380,etcd3=https://10.0.0.7:2380
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_INITIAL_CLUSTER_TOKEN=vmsauth-site
ETCD_DATA_DIR=/var/lib/etcd/default
ETCD_CERT_FILE=/etc/etcd/pki/$NAME.pem
ETCD_KEY_FILE=/etc/etcd/pki/$NAME-key.pem
ETCD_TRUSTED_CA_FILE=/etc/etcd/pki/ca.pem
ETCD_CLIENT_CERT_AUTH=true
ETCD_PEER_CERT_FILE=/etc/etcd/pki/$NAME.pem
ETCD_PEER_KEY_FILE=/etc/etcd/pki/$NAME-key.pem
ETCD_PEER_TRUSTED_CA_FILE=/etc/etcd/pki/ca.pem
ETCD_PEER_CLIENT_CERT_AUTH=true
ETCD_AUTO_COMPACTION_RETENTION=1
ETCD_QUOTA_BACKEND_BYTES=2147483648
EOF
`

// The README's guide, run on loopback: certificates made with its openssl
// commands and members configured with its /etc/default/etcd (etcd reads
// the ETCD_* variables, as Debian's unit passes them), each member on an
// address of its own in 127.0.0.0/8 with the standard ports, as on three
// boxes. vmsauth's client then writes and reads through the JSON API with
// its client certificate.
func TestREADMEEtcdSite(t *testing.T) {
	etcdBin := needTools(t)
	pki := t.TempDir()
	script(t, pki, caScript)
	// Addresses of this run (another run may hold 2379 on others).
	net := fmt.Sprintf("127.%d.%d.", 100+os.Getpid()%100, time.Now().Nanosecond()%250+1)
	names := []string{"etcd1", "etcd2", "etcd3"}
	ips := []string{net + "5", net + "6", net + "7"}
	c := &cluster{}
	defer c.stop()
	for i, n := range names {
		script(t, pki, memberScript, "NAME="+n, "IP="+ips[i])
		conf := filepath.Join(t.TempDir(), "etcd")
		script(t, pki, strings.NewReplacer("10.0.0.5", ips[0], "10.0.0.6", ips[1], "10.0.0.7", ips[2],
			"/etc/etcd/pki", pki, "/etc/default/etcd", conf, "/var/lib/etcd/default", filepath.Join(t.TempDir(), "data"),
		).Replace(configScript), "NAME="+n, "IP="+ips[i])
		env := readEnvFile(t, conf)
		m := &member{name: n, clientURL: "https://" + ips[i] + ":2379", logPath: conf + ".log"}
		c.members = append(c.members, m)
		if err := m.launch(etcdBin, nil, env); err != nil {
			t.Fatal(err)
		}
	}
	script(t, pki, clientScript, "NAME=vmsauth-rec1")
	tc, err := etcd.TLSConfig(filepath.Join(pki, "ca.pem"), filepath.Join(pki, "vmsauth-rec1.pem"), filepath.Join(pki, "vmsauth-rec1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c.hc = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	for _, m := range c.members {
		if err := c.waitHealthy(m, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	ec, err := etcd.New(etcd.Config{Endpoints: strings.Split(c.endpoints(), ","), TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := ec.Put(ctx, etcd.PutRequest{Key: []byte("/vmsauth/x"), Value: []byte("1")}); err != nil {
		t.Fatalf("put through the JSON API over TLS: %v", err)
	}
	r, err := ec.Range(ctx, etcd.RangeRequest{Key: []byte("/vmsauth/x")})
	if err != nil || len(r.KVs) != 1 {
		t.Fatalf("range through the JSON API over TLS: %v %v", r, err)
	}
}

// readEnvFile reads KEY=VALUE lines, as systemd's EnvironmentFile= does for
// these simple values.
func readEnvFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			env = append(env, line)
		}
	}
	return env
}

// A member whose certificate lacks clientAuth does not serve the JSON API:
// etcd 3.4's JSON gateway connects to its own member with the server
// certificate as its client certificate, and the member refuses it.
func TestREADMEEtcdServerCertNeedsClientAuth(t *testing.T) {
	etcdBin := needTools(t)
	pki := t.TempDir()
	script(t, pki, caScript)
	script(t, pki, clientScript, "NAME=vmsauth-rec1")
	tc, err := etcd.TLSConfig(filepath.Join(pki, "ca.pem"), filepath.Join(pki, "vmsauth-rec1.pem"), filepath.Join(pki, "vmsauth-rec1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	ctx := context.Background()

	// A member certificate made the README's way, but without clientAuth.
	script(t, pki, strings.Replace(memberScript, "serverAuth,clientAuth", "serverAuth", 1), "NAME=server-only", "IP=127.0.0.1")
	one, err := startCluster(etcdBin, t.TempDir(), 1, "https", "https", tlsMembers(pki, []string{"server-only"}), hc)
	if err != nil {
		t.Fatal(err)
	}
	defer one.stop()
	ec, err := etcd.New(etcd.Config{Endpoints: strings.Split(one.endpoints(), ","), TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = ec.Range(tctx, etcd.RangeRequest{Key: []byte("/vmsauth/x")})
	t.Logf("JSON API of a member without clientAuth: %v; the member's log ends:\n%s", err, tail(one.members[0].logPath, 3))
	if err == nil {
		t.Fatal("the JSON API answered with a serverAuth-only member certificate: the README's claim is wrong")
	}
	// And it is the member refusing its own gateway's client certificate.
	if log, _ := os.ReadFile(one.members[0].logPath); !strings.Contains(string(log), "incompatible key usage") {
		t.Fatalf("the member did not refuse a certificate for its key usage:\n%s", log)
	}
}
