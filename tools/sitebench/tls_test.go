//go:build linux

package main

import (
	"context"
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

// A 3-member cluster on certificates made the README's way serves vmsauth's
// client (its JSON API, with a client certificate); and a member whose
// certificate lacks clientAuth does not: etcd 3.4's JSON gateway connects
// to its own member with the server certificate as its client certificate.
func TestREADMEEtcdCertificates(t *testing.T) {
	etcdBin := needTools(t)
	pki := t.TempDir()
	script(t, pki, caScript)
	names := []string{"etcd1", "etcd2", "etcd3"}
	for _, n := range names {
		script(t, pki, memberScript, "NAME="+n, "IP=127.0.0.1")
	}
	script(t, pki, clientScript, "NAME=vmsauth-rec1")
	tc, err := etcd.TLSConfig(filepath.Join(pki, "ca.pem"), filepath.Join(pki, "vmsauth-rec1.pem"), filepath.Join(pki, "vmsauth-rec1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}

	c, err := startCluster(etcdBin, t.TempDir(), 3, "https", "https", tlsMembers(pki, names), hc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
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
	c.stop()

	// The same without clientAuth on the member's certificate.
	script(t, pki, strings.Replace(memberScript, "serverAuth,clientAuth", "serverAuth", 1), "NAME=server-only", "IP=127.0.0.1")
	one, err := startCluster(etcdBin, t.TempDir(), 1, "https", "https", tlsMembers(pki, []string{"server-only"}), hc)
	if err != nil {
		// Its peer side already fails without clientAuth on a 1-member
		// cluster in some versions; either way the certificate is unusable.
		t.Logf("a member with a serverAuth-only certificate did not start: %v", err)
		return
	}
	defer one.stop()
	ec, err = etcd.New(etcd.Config{Endpoints: strings.Split(one.endpoints(), ","), TLS: tc})
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
