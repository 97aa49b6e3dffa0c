package mkclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// rawServer answers every connection on loopback with answer (nil: close
// at once), optionally over TLS.
func rawServer(t *testing.T, cfg *tls.Config, answer []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if tc, ok := c.(*tls.Conn); ok {
					_ = tc.Handshake()
				}
				if answer != nil {
					buf := make([]byte, 4096)
					_ = c.SetReadDeadline(time.Now().Add(time.Second))
					_, _ = c.Read(buf)
					_, _ = c.Write(answer)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// selfSigned is a certificate for 127.0.0.1 valid from notBefore to
// notAfter, and its PEM.
func selfSigned(t *testing.T, notBefore, notAfter time.Time) (tls.Certificate, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// Each way an exchange can fail is named by its category, with the
// configured host and nothing Go's error said. The servers' answers spell
// a marker where Go's texts quote them; it must not come back.
func TestTransportFailuresAreCategories(t *testing.T) {
	const marker = "SECRETMARKER"
	cert, certPEM := selfSigned(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	expired, expiredPEM := selfSigned(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	for _, tt := range []struct {
		name    string
		base    func() string
		ca      string
		want    Failure
		retried bool
	}{
		{"closed at once", func() string { return "http://" + rawServer(t, nil, nil) }, "", FailureReset, true},
		{"status line", func() string { return "http://" + rawServer(t, nil, []byte("HTTP/1.1 2"+marker+" OK\r\n\r\n")) }, "", FailureNotHTTP, true},
		{"header line", func() string {
			return "http://" + rawServer(t, nil, []byte("HTTP/1.1 200 OK\r\n"+marker+"\r\n\r\n"))
		}, "", FailureNotHTTP, true},
		{"chunk", func() string {
			return "http://" + rawServer(t, nil, []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+marker+"\r\n"))
		}, "", FailureNotHTTP, false}, // the answer came; its body broke
		{"expired certificate", func() string {
			return "https://" + rawServer(t, &tls.Config{Certificates: []tls.Certificate{expired}}, []byte("HTTP/1.1 200 OK\r\n\r\n"))
		}, expiredPEM, FailureTLSExpired, false},
		{"no common TLS version", func() string {
			return "https://" + rawServer(t, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}, nil)
		}, certPEM, FailureTLSHandshake, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := tt.base()
			c, err := New(Config{BaseURL: base, CACertPEM: tt.ca, MaxRetries: 1, RequestTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Login(context.Background(), "a@b.c", marker)
			var te *TransportError
			if !errors.As(err, &te) || te.Failure != tt.want {
				t.Fatalf("err = %v (%#v), want failure %d", err, te, tt.want)
			}
			host := strings.SplitN(base, "://", 2)[1]
			if msg := err.Error(); strings.Contains(msg, marker) || !strings.HasSuffix(msg, ": "+tt.want.Describe(host)) {
				t.Fatalf("message %q", msg)
			}
			if attempts := map[bool]int{true: 2, false: 1}[tt.retried]; te.Attempts != attempts {
				t.Errorf("%d attempts, want %d", te.Attempts, attempts)
			}
		})
	}
}
