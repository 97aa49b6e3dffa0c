// Package hostile is an upstream that echoes what the engine sent it into
// the places where Go's own error texts quote an answer: a malformed status
// line, a header line without a colon, a bad Content-Length or
// Transfer-Encoding, a reason phrase, a certificate's names, a redirect's
// host, every field of a Feathers error body, and a project listing broken
// by the bearer token. The tests that prove no sink of the engine holds a
// password or a token point the engine at it, one mode at a time.
//
// Other modes break the rules beside the errors: an answer longer than its
// Content-Length or bytes sent on an idle keep-alive connection (which
// net/http logs on its own), ids and a token that spell the password or
// carry terminal escapes, and the wire itself (HTTP/2 GOAWAY with last
// stream id 0, REFUSED_STREAM, a server that closes reused connections),
// which make Go's transport send requests the engine did not count.
//
// It speaks raw bytes over TCP (and TLS), since a well-behaved HTTP server
// library cannot send the broken answers it needs.
package hostile

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// Mode is one channel an echoed secret can take.
type Mode string

// The modes. Each answers every login (POST /authentication) with the
// password it carried, spelt into one place of a broken or refusing
// answer; ProjectsEcho logs in and answers the project listing with the
// bearer token instead.
const (
	StatusLine       Mode = "status-line"       // HTTP/1.1 2<password> Created
	HeaderLine       Mode = "header-line"       // a header line that is the password, no colon
	ContentLength    Mode = "content-length"    // Content-Length: <password>
	TransferEncoding Mode = "transfer-encoding" // Transfer-Encoding: <password>
	Reason401        Mode = "reason-401"        // HTTP/1.1 401 <password>
	Reason503        Mode = "reason-503"        // HTTP/1.1 503 <password>, every attempt
	CertName         Mode = "cert-name"         // first connection trusted and 503; the retry's certificate names the password
	RedirectRaw      Mode = "redirect-raw"      // 302 to https://<password>.example/
	RedirectLower    Mode = "redirect-lower"    // 302 to https://<password, lower-cased>.example/
	RedirectHex      Mode = "redirect-hex"      // 302 to https://<password, hex>.example/
	Feathers         Mode = "feathers"          // 401 whose every Feathers field is the password
	ProjectsEcho     Mode = "projects-echo"     // login succeeds; the project listing breaks with the token as a header line
	BadToken         Mode = "bad-token"         // a 201 whose accessToken's signature carries the password in an OSC 52 escape, a newline and a CI command
)

// Modes lists every mode in which a login or a listing fails.
var Modes = []Mode{StatusLine, HeaderLine, ContentLength, TransferEncoding, Reason401, Reason503, CertName,
	RedirectRaw, RedirectLower, RedirectHex, Feathers, ProjectsEcho, BadToken}

// The modes in which every login succeeds, and the upstream's bytes go
// where the engine writes nothing: the server log, through net/http's
// own logger.
const (
	OverlongAnswer Mode = "overlong-answer" // a 201 with a token, then, past its Content-Length, "HTTP/1.1 200 <password>" and a header of it
	IdleBytes      Mode = "idle-bytes"      // a 201 with a token; 300 ms later the same bytes on the idle keep-alive connection
)

// LogModes lists the modes that aim at the server log.
var LogModes = []Mode{OverlongAnswer, IdleBytes}

// The modes in which a login succeeds with user.id, jti and sub each
// spelling the password: as sent, its first half, upper-cased, base64.
const (
	IDRaw    Mode = "id-raw"
	IDHalf   Mode = "id-half"
	IDUpper  Mode = "id-upper"
	IDBase64 Mode = "id-base64"
)

// IDModes lists the modes that put the password into the ids.
var IDModes = []Mode{IDRaw, IDHalf, IDUpper, IDBase64}

// The modes that aim at the wire. The HTTP/2 ones speak TLS and offer h2
// and http/1.1 by ALPN: a client that picks h2 meets the fault on every
// request; one that offers no h2 is served over HTTP/1.1 as a good
// upstream would. Their Requests count every request sent, in either.
const (
	H2GoAway     Mode = "h2-goaway"         // HTTP/2: every request answered with GOAWAY, last stream id 0
	H2Refused    Mode = "h2-refused-stream" // HTTP/2: every request answered with RST_STREAM REFUSED_STREAM
	ClosesReused Mode = "closes-reused"     // HTTP/1.1: each connection serves one request, then reads the next and closes
)

// WireModes lists the modes that aim at the wire.
var WireModes = []Mode{H2GoAway, H2Refused, ClosesReused}

// HTTP2 is what a server does on an HTTP/2 connection (Config.HTTP2).
type HTTP2 int

// The HTTP/2 behaviours.
const (
	NoHTTP2 HTTP2 = iota
	HTTP2GoAway
	HTTP2Refuse
)

// Request is what the engine sent: the password of a login, or the bearer
// token of a project listing.
type Request struct {
	Method, Path string
	Password     string
	Bearer       string
}

// Config sets what the server answers, for a fuzz test; a Server of a
// Mode fills it in.
type Config struct {
	// Answer is the raw bytes written back to one request.
	Answer func(Request) []byte
	// CertNames, when set, makes the server speak TLS: the first
	// connection presents a certificate for localhost and 127.0.0.1,
	// signed by the server's CA; every later one a certificate whose DNS
	// names and common name are CertNames of the first request seen.
	CertNames func(Request) []string
	// TLS makes the server speak TLS with a certificate for localhost
	// and 127.0.0.1 (implied by CertNames and HTTP2).
	TLS bool
	// KeepAlive keeps a connection open for further requests after an
	// answer; else the server closes it.
	KeepAlive bool
	// Later, when set, is written on the connection IdleAfter after the
	// answer, while it is idle.
	Later     func(Request) []byte
	IdleAfter time.Duration
	// ClosesReused makes the server read the second request of a
	// connection and close it without an answer.
	ClosesReused bool
	// HTTP2, when not NoHTTP2, offers h2 by ALPN and treats every HTTP/2
	// request so.
	HTTP2 HTTP2
}

// Server is a running hostile upstream.
type Server struct {
	// URL is the base_url to configure: http://127.0.0.1:port, or
	// https://localhost:port for a TLS server.
	URL string
	// CAPEM is the CA to configure as ca_cert for a TLS server.
	CAPEM string

	cfg Config
	ln  net.Listener
	wg  sync.WaitGroup

	mu     sync.Mutex
	first  *Request
	tokens []string
	open   map[net.Conn]bool

	requests  atomic.Int64
	ca        *x509.Certificate
	caKey     *ecdsa.PrivateKey
	signKey   []byte
	goodCert  *tls.Certificate
	hostsCert *tls.Certificate
}

// Start runs a server of mode on 127.0.0.1.
func Start(mode Mode) (*Server, error) {
	s := &Server{}
	var cfg Config
	switch mode {
	case StatusLine:
		cfg.Answer = func(r Request) []byte {
			return fmt.Appendf(nil, "HTTP/1.1 2%s Created\r\nContent-Length: 0\r\n\r\n", r.Password)
		}
	case HeaderLine:
		cfg.Answer = func(r Request) []byte {
			return fmt.Appendf(nil, "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n%s\r\nContent-Length: 2\r\n\r\n{}", r.Password)
		}
	case ContentLength:
		cfg.Answer = func(r Request) []byte {
			return fmt.Appendf(nil, "HTTP/1.1 201 Created\r\nContent-Length: %s\r\n\r\n{}", r.Password)
		}
	case TransferEncoding:
		cfg.Answer = func(r Request) []byte {
			return fmt.Appendf(nil, "HTTP/1.1 201 Created\r\nTransfer-Encoding: %s\r\n\r\n{}", r.Password)
		}
	case Reason401:
		cfg.Answer = func(r Request) []byte {
			return fmt.Appendf(nil, "HTTP/1.1 401 %s\r\nContent-Length: 2\r\n\r\n{}", r.Password)
		}
	case Reason503:
		cfg.Answer = func(r Request) []byte {
			return fmt.Appendf(nil, "HTTP/1.1 503 %s\r\nContent-Length: 0\r\n\r\n", r.Password)
		}
	case CertName:
		cfg.Answer = func(Request) []byte {
			return []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		}
		cfg.CertNames = func(r Request) []string { return Spellings(r.Password) }
	case RedirectRaw, RedirectLower, RedirectHex:
		spell := map[Mode]func(string) string{RedirectRaw: func(s string) string { return s }, RedirectLower: strings.ToLower,
			RedirectHex: func(s string) string { return hex.EncodeToString([]byte(s)) }}[mode]
		cfg.Answer = func(r Request) []byte {
			return fmt.Appendf(nil, "HTTP/1.1 302 Found\r\nLocation: https://%s.example/login?p=%s\r\nContent-Length: 0\r\n\r\n",
				spell(r.Password), spell(r.Password))
		}
	case Feathers:
		cfg.Answer = func(r Request) []byte {
			body, _ := json.Marshal(map[string]any{"name": r.Password, "message": r.Password, "code": r.Password,
				"className": r.Password, "data": map[string]string{"password": r.Password}, "errors": []string{r.Password}})
			return fmt.Appendf(nil, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	case ProjectsEcho:
		cfg.Answer = func(r Request) []byte {
			if r.Bearer != "" {
				return fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s\r\nContent-Length: 2\r\n\r\n[]", r.Bearer)
			}
			body, _ := json.Marshal(map[string]any{"accessToken": s.mint(), "user": map[string]any{"id": 7}})
			return fmt.Appendf(nil, "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	case BadToken:
		cfg.Answer = func(r Request) []byte {
			enc := base64.RawURLEncoding
			tok := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"access"}`)) + "." +
				enc.EncodeToString(fmt.Appendf(nil, `{"sub":"7","exp":%d}`, time.Now().Add(time.Hour).Unix())) + "." +
				"c2ln\x1b]52;c;" + base64.StdEncoding.EncodeToString([]byte(r.Password)) + "\x07\n::warning::injected $(id) " + r.Password + "\u202e"
			return loginAnswer(tok, 7)
		}
	case OverlongAnswer, IdleBytes:
		echo := func(r Request) []byte {
			return fmt.Appendf(nil, "HTTP/1.1 200 %s\r\nX-Echo: %s\r\n\r\n", r.Password, r.Password)
		}
		cfg.KeepAlive = true
		cfg.Answer = func(r Request) []byte {
			if r.Method != http.MethodPost {
				return listing()
			}
			a := loginAnswer(s.mint(), 7)
			if mode == OverlongAnswer {
				a = append(a, echo(r)...)
			}
			return a
		}
		if mode == IdleBytes {
			cfg.Later, cfg.IdleAfter = echo, 300*time.Millisecond
		}
	case IDRaw, IDHalf, IDUpper, IDBase64:
		spell := map[Mode]func(string) string{IDRaw: func(p string) string { return p },
			IDHalf: func(p string) string { return p[:len(p)/2] }, IDUpper: strings.ToUpper,
			IDBase64: func(p string) string { return base64.StdEncoding.EncodeToString([]byte(p)) }}[mode]
		cfg.KeepAlive = true
		cfg.Answer = func(r Request) []byte {
			if r.Method != http.MethodPost {
				return listing()
			}
			id := spell(r.Password)
			return loginAnswer(s.mintWith(id, id), id)
		}
	case H2GoAway, H2Refused:
		cfg.HTTP2 = map[Mode]HTTP2{H2GoAway: HTTP2GoAway, H2Refused: HTTP2Refuse}[mode]
		cfg.KeepAlive = true
		cfg.Answer = func(r Request) []byte {
			if r.Method != http.MethodPost {
				return listing()
			}
			return loginAnswer(s.mint(), 7)
		}
	case ClosesReused:
		cfg.KeepAlive, cfg.ClosesReused = true, true
		cfg.Answer = func(r Request) []byte {
			if r.Method != http.MethodPost {
				return listing()
			}
			return loginAnswer(s.mint(), 7)
		}
	default:
		return nil, fmt.Errorf("hostile: unknown mode %q", mode)
	}
	return s, s.start(cfg)
}

// loginAnswer is a 201 login answer with token and user id.
func loginAnswer(token string, userID any) []byte {
	body, _ := json.Marshal(map[string]any{"accessToken": token, "user": map[string]any{"id": userID}})
	return fmt.Appendf(nil, "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// ListedProjects are the projects a successful listing names.
var ListedProjects = []string{"DEMO_PROJECT", "CI_PROJECT", "TEAM_A", "TEAM_B"}

// listing is a 200 project listing of ListedProjects.
func listing() []byte {
	var list []map[string]any
	for i, name := range ListedProjects {
		list = append(list, map[string]any{"id": i + 1, "name": name})
	}
	body, _ := json.Marshal(list)
	return fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// StartWith runs a server that answers as cfg says.
func StartWith(cfg Config) (*Server, error) {
	s := &Server{}
	return s, s.start(cfg)
}

func (s *Server) start(cfg Config) error {
	if cfg.Answer == nil {
		return errors.New("hostile: Config.Answer is required")
	}
	s.cfg = cfg
	s.signKey = make([]byte, 32)
	_, _ = rand.Read(s.signKey)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	if cfg.CertNames != nil || cfg.TLS || cfg.HTTP2 != NoHTTP2 {
		if err := s.makeCA(); err != nil {
			ln.Close()
			return err
		}
		tc := &tls.Config{GetCertificate: s.certificate, MinVersion: tls.VersionTLS12}
		if cfg.HTTP2 != NoHTTP2 {
			tc.NextProtos = []string{"h2", "http/1.1"}
		}
		ln = tls.NewListener(ln, tc)
		s.URL = fmt.Sprintf("https://localhost:%d", port)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve()
	return nil
}

// Close stops the server, closes its connections (an idle one the client
// keeps would otherwise hold it) and waits for them to end.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Tokens are the access tokens the server issued (ProjectsEcho).
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tokens...)
}

// Requests is how many requests the server read.
func (s *Server) Requests() int { return int(s.requests.Load()) }

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.open == nil {
			s.open = map[net.Conn]bool{}
		}
		s.open[conn] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.open, conn)
				s.mu.Unlock()
				conn.Close()
			}()
			s.handle(conn)
		}()
	}
}

// handle answers the requests on conn with the configured bytes. Without
// KeepAlive it closes the connection after one: an answer that broke HTTP
// leaves nothing to reuse.
func (s *Server) handle(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if tc, ok := conn.(*tls.Conn); ok && s.cfg.HTTP2 != NoHTTP2 {
		if tc.HandshakeContext(context.Background()) != nil {
			return
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			s.handleHTTP2(tc)
			return
		}
	}
	br := bufio.NewReader(conn)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(io.LimitReader(req.Body, 64<<10))
		r := Request{Method: req.Method, Path: req.URL.Path}
		var login struct {
			Password string `json:"password"`
		}
		if json.Unmarshal(body, &login) == nil {
			r.Password = login.Password
		}
		r.Bearer = strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
		s.requests.Add(1)
		s.mu.Lock()
		if s.first == nil {
			s.first = &r
		}
		s.mu.Unlock()
		if s.cfg.ClosesReused && n > 0 {
			return
		}
		if _, err := conn.Write(s.cfg.Answer(r)); err != nil || !s.cfg.KeepAlive {
			return
		}
		if s.cfg.Later != nil {
			time.Sleep(s.cfg.IdleAfter)
			if _, err := conn.Write(s.cfg.Later(r)); err != nil {
				return
			}
		}
	}
}

// handleHTTP2 speaks just enough HTTP/2 to meet each request (a HEADERS
// frame) with the configured fault.
func (s *Server) handleHTTP2(conn net.Conn) {
	br := bufio.NewReader(conn)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	fr := http2.NewFramer(conn, br)
	if fr.WriteSettings() != nil {
		return
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() && fr.WriteSettingsAck() != nil {
				return
			}
		case *http2.HeadersFrame:
			s.requests.Add(1)
			if s.cfg.HTTP2 == HTTP2GoAway {
				_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
				return
			}
			if fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream) != nil {
				return
			}
		}
	}
}

// Spellings are the password as a certificate names it: as sent, lower-cased
// and hex, each as a DNS name and the first as the common name.
func Spellings(password string) []string {
	return []string{password, strings.ToLower(password), hex.EncodeToString([]byte(password))}
}

func (s *Server) makeCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hostile test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	s.ca, _ = x509.ParseCertificate(der)
	s.caKey = key
	s.CAPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	s.goodCert, err = s.leaf("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	return err
}

func (s *Server) leaf(cn string, names []string, ips []net.IP) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// certificate is the trusted certificate until a request told the server
// what to spell, and the names' certificate from then on.
func (s *Server) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == nil || s.cfg.CertNames == nil {
		return s.goodCert, nil
	}
	if s.hostsCert == nil {
		names := s.cfg.CertNames(*s.first)
		cn := ""
		if len(names) > 0 {
			cn = names[0]
		}
		cert, err := s.leaf(cn, names, nil)
		if err != nil {
			// x509 refuses names that are not ASCII: the common name alone
			// still carries them.
			if cert, err = s.leaf(cn, nil, nil); err != nil {
				return nil, err
			}
		}
		s.hostsCert = cert
	}
	return s.hostsCert, nil
}

// mint issues an HS256 JWT shaped like MetaKraftwerk's, valid for an hour.
func (s *Server) mint() string {
	jti := make([]byte, 8)
	_, _ = rand.Read(jti)
	return s.mintWith("7", hex.EncodeToString(jti))
}

// mintWith issues a token with the sub and jti given.
func (s *Server) mintWith(sub, jti string) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"access"}`))
	c, _ := json.Marshal(map[string]any{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "jti": jti})
	claims := enc.EncodeToString(c)
	mac := hmac.New(sha256.New, s.signKey)
	mac.Write([]byte(header + "." + claims))
	tok := header + "." + claims + "." + enc.EncodeToString(mac.Sum(nil))
	s.mu.Lock()
	s.tokens = append(s.tokens, tok)
	s.mu.Unlock()
	return tok
}
