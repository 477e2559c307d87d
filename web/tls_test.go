package web_test

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"

	"vmsauth/web"
)

// TestTLSSuites is finding 8 of issue 13: TLS 1.2 offered the CBC-SHA1
// suites ECDHE-ECDSA-AES128-SHA and -AES256-SHA. A real server with the
// box's self-signed certificate is offered each suite Go knows, alone: only
// the AEAD ones may be accepted.
func TestTLSSuites(t *testing.T) {
	certFile, keyFile, err := web.SelfSigned(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := web.NewServer("", http.NotFoundHandler())
	srv.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	go srv.ServeTLS(ln, certFile, keyFile)
	t.Cleanup(func() { srv.Close() })

	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		aead := strings.Contains(cs.Name, "_GCM_") || strings.Contains(cs.Name, "CHACHA20_POLY1305")
		if !aead {
			for _, id := range srv.TLSConfig.CipherSuites {
				if id == cs.ID {
					t.Errorf("server config offers %s", cs.Name)
				}
			}
		}
		if !supports12(cs) || !strings.Contains(cs.Name, "ECDSA") {
			continue // TLS 1.3 suites, or not for an ECDSA certificate
		}
		t.Run(cs.Name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
				InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{cs.ID},
			})
			if err == nil {
				conn.Close()
			}
			if aead && err != nil {
				t.Fatalf("AEAD suite refused: %v", err)
			}
			if !aead && err == nil {
				t.Fatal("a non-AEAD suite was accepted")
			}
		})
	}
	// A client that offers only the two CBC-SHA1 suites of the finding.
	_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA},
	})
	if err == nil {
		t.Fatal("a client offering only CBC-SHA1 suites connected")
	}
}

func supports12(cs *tls.CipherSuite) bool {
	for _, v := range cs.SupportedVersions {
		if v == tls.VersionTLS12 {
			return true
		}
	}
	return false
}
