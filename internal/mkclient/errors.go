package mkclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// Every text this package puts into an error is one of its own templates
// filled with values it owns: an operation name, a status code as a
// number, a count, the configured host, a category below, or a Feathers
// name or message from a fixed allow-list. No error text of net/http, net,
// crypto/tls, crypto/x509, net/url or encoding/json is ever rendered: those
// quote what the upstream sent (a malformed status line, a header, a
// certificate's names), and an upstream or a proxy in front of it may echo
// the request, password included, into exactly those places. The Go error
// stays reachable with errors.Is/As (Unwrap), for decisions, never for text.

// Sentinel errors; match them with errors.Is.
var (
	// ErrResponseTooLarge: the body exceeded MaxBodyBytes.
	ErrResponseTooLarge = errors.New("response body exceeds the 1 MiB limit")
	// ErrMalformedResponse: a success status with a body that cannot be used.
	ErrMalformedResponse = errors.New("malformed response")
	// ErrRedirect: the server answered with a redirect, which is never followed.
	ErrRedirect = errors.New("redirect refused")
	// ErrTooManyProjects: the project list is longer than MaxProjects.
	ErrTooManyProjects = errors.New("too many projects")
	// ErrRequest: the request could not be built (never seen in practice:
	// the base URL and the body are the engine's own).
	ErrRequest = errors.New("the request could not be built")
)

// FieldError is a Config field that cannot be used.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// APIError is an answer from MetaKraftwerk with an unexpected status. It
// quotes only what the engine can vouch for: the status, a known FeathersJS
// error name, and a message from a short list of known ones. Free upstream
// text may echo the request (a gateway quoting the login body, a redirect
// carrying it in its query), in encodings no redaction can foresee, so it
// is withheld.
type APIError struct {
	// Op names the call: "login" or "list projects".
	Op         string
	StatusCode int
	// Name is the FeathersJS error name ("NotAuthenticated"), when the body
	// named one of the known classes; otherwise "".
	Name string
	// Message is a known FeathersJS message, the status text when the body
	// had none, or MessageWithheld.
	Message string
	// Redirect is set for redirects: where it points, in the engine's
	// words (RedirectTarget).
	Redirect RedirectTarget
	// Attempts is how many requests were made in total.
	Attempts int
}

// Status is "HTTP <code>" followed by the FeathersJS error name when known.
func (e *APIError) Status() string {
	if e.Name != "" {
		return fmt.Sprintf("HTTP %d %s", e.StatusCode, e.Name)
	}
	return fmt.Sprintf("HTTP %d", e.StatusCode)
}

func (e *APIError) Error() string {
	if e.Redirect != "" {
		return fmt.Sprintf("MetaKraftwerk answered the %s request with HTTP %d and a redirect to %s (path and query not shown); redirects are not followed so that credentials are never sent elsewhere (check base_url)",
			e.Op, e.StatusCode, e.Redirect)
	}
	s := fmt.Sprintf("MetaKraftwerk answered the %s request with %s: %s", e.Op, e.Status(), e.Message)
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return s
}

// Is lets errors.Is(err, ErrRedirect) match redirect answers.
func (e *APIError) Is(target error) bool {
	return target == ErrRedirect && e.Redirect != ""
}

// Rejected reports whether MetaKraftwerk refused the request itself (bad
// credentials, a missing field, no permission) rather than failing to serve
// it. Such requests are never retried and are the caller's mistake.
func (e *APIError) Rejected() bool {
	switch e.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// RedirectTarget is where a redirect points, in the engine's words: the
// configured host (with the target's scheme, http or https) when the
// redirect stays on it, else "another host", or that the Location was
// unusable. A host the upstream names is never repeated: it is upstream
// text like any other.
type RedirectTarget string

// The redirect targets other than the configured host.
const (
	RedirectElsewhere RedirectTarget = "another host"
	RedirectUnusable  RedirectTarget = "an unusable Location"
)

// Failure is why an exchange with MetaKraftwerk gave no usable answer, as
// an operator can act on it.
type Failure int

// The failures, from the most to the least specific.
const (
	// FailureNetwork is a connection that failed in a way none of the
	// others names.
	FailureNetwork Failure = iota
	FailureTimeout
	FailureRefused
	FailureReset
	FailureDNS
	FailureTLSUnknownAuthority
	FailureTLSNameMismatch
	FailureTLSExpired
	FailureTLSInvalid
	FailureTLSHandshake
	FailureNotTLS
	FailureNotHTTP
	// FailureProxyRefused is a proxy answering CONNECT with a status other
	// than 200 (TransportError.ProxyStatus).
	FailureProxyRefused
)

// Failures lists every Failure (for the docs' tests).
var Failures = []Failure{FailureNetwork, FailureTimeout, FailureRefused, FailureReset, FailureDNS,
	FailureTLSUnknownAuthority, FailureTLSNameMismatch, FailureTLSExpired, FailureTLSInvalid,
	FailureTLSHandshake, FailureNotTLS, FailureNotHTTP, FailureProxyRefused}

// Describe is the failure in words; host is the configured host.
func (f Failure) Describe(host string) string {
	switch f {
	case FailureTimeout:
		return "no answer within request_timeout"
	case FailureRefused:
		return fmt.Sprintf("the connection to %s was refused", host)
	case FailureReset:
		return fmt.Sprintf("the connection to %s was closed or reset before the answer was complete", host)
	case FailureDNS:
		return fmt.Sprintf("the name of %s could not be resolved (DNS)", host)
	case FailureTLSUnknownAuthority:
		return fmt.Sprintf("the TLS certificate of %s is signed by an unknown authority (set ca_cert to trust a private CA)", host)
	case FailureTLSNameMismatch:
		return fmt.Sprintf("the TLS certificate presented is not valid for %s, the host in base_url", host)
	case FailureTLSExpired:
		return fmt.Sprintf("the TLS certificate of %s has expired or is not yet valid", host)
	case FailureTLSInvalid:
		return fmt.Sprintf("the TLS certificate of %s is invalid", host)
	case FailureTLSHandshake:
		return fmt.Sprintf("the TLS handshake with %s failed", host)
	case FailureNotTLS:
		return fmt.Sprintf("%s did not answer with TLS (base_url says https; is the server plain http?)", host)
	case FailureNotHTTP:
		return fmt.Sprintf("the answer from %s was not valid HTTP", host)
	case FailureProxyRefused:
		return fmt.Sprintf("the proxy refused the connection to %s", host)
	}
	return fmt.Sprintf("a network error on the connection to %s", host)
}

// Retryable reports whether another attempt may help: configuration errors
// (TLS) never go away by asking again.
func (f Failure) Retryable() bool {
	switch f {
	case FailureTLSUnknownAuthority, FailureTLSNameMismatch, FailureTLSExpired, FailureTLSInvalid, FailureNotTLS:
		return false
	}
	return true
}

// classify names the failure behind a transport error. It may look at the
// error's types and text, since what it returns is one of its own values.
func classify(err error) Failure {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case proxyStatus(err) != 0:
		return FailureProxyRefused
	case errors.As(err, &unknownCA):
		return FailureTLSUnknownAuthority
	case errors.As(err, &hostErr):
		return FailureTLSNameMismatch
	case errors.As(err, &invalid) && (invalid.Reason == x509.Expired):
		return FailureTLSExpired
	case errors.As(err, &invalid), errors.As(err, &verifyErr):
		return FailureTLSInvalid
	// net/http reports a plain-HTTP answer to a TLS handshake as
	// ErrSchemeMismatch; other non-TLS answers arrive as a RecordHeaderError.
	case errors.Is(err, http.ErrSchemeMismatch), errors.As(err, &recordErr):
		return FailureNotTLS
	case isTimeout(err):
		return FailureTimeout
	case errors.As(err, &dnsErr):
		return FailureDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return FailureRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		innermost(err).Error() == errServerClosedIdle:
		return FailureReset
	case errors.As(err, &opErr) && opErr.Op == "remote error", strings.HasPrefix(innermost(err).Error(), "tls: "):
		// A TLS alert from the server, or the client's own TLS refusal
		// (no common version or cipher suite).
		return FailureTLSHandshake
	case errors.As(err, &opErr):
		return FailureNetwork
	}
	// What is left came with a connection but no parseable answer: net/http's
	// status line, header, Content-Length, Transfer-Encoding or chunk
	// errors.
	return FailureNotHTTP
}

// TransportError is a failure to get any usable answer: connection refused,
// timeout, TLS verification failure, an answer that is not HTTP, or the
// caller's deadline while waiting to retry.
type TransportError struct {
	Op string
	// Host is the configured host, the only host the text names.
	Host     string
	Attempts int
	// LastStatus is the status of the last answer, if a retryable answer
	// (429, 5xx) came before the final failure.
	LastStatus int
	// Deadline is set when the caller's context ended the call, rather
	// than the per-attempt timeout or the network.
	Deadline bool
	// Failure is why, when Deadline is not set.
	Failure Failure
	// ProxyStatus is the status a proxy refused CONNECT with
	// (FailureProxyRefused).
	ProxyStatus int
	// Err is Go's error, for errors.Is/As; its text is never rendered.
	Err error
}

func newTransportError(ctx context.Context, op, host string, attempts, lastStatus int, err error) *TransportError {
	return &TransportError{Op: op, Host: host, Attempts: attempts, LastStatus: lastStatus,
		Deadline: ctx.Err() != nil, Failure: classify(err), ProxyStatus: proxyStatus(err), Err: err}
}

func (e *TransportError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "MetaKraftwerk gave no usable answer to the %s request", e.Op)
	if e.Attempts > 0 {
		fmt.Fprintf(&b, " (%d attempt", e.Attempts)
		if e.Attempts > 1 {
			b.WriteString("s")
		}
		if e.LastStatus != 0 {
			fmt.Fprintf(&b, ", last answer HTTP %d", e.LastStatus)
		}
		b.WriteString(")")
	}
	if e.Deadline {
		if errors.Is(e.Err, context.Canceled) {
			b.WriteString(": the Vault request was cancelled")
		} else {
			b.WriteString(": the Vault request's deadline was reached")
		}
		return b.String()
	}
	fmt.Fprintf(&b, ": %s", e.Failure.Describe(e.Host))
	if e.Failure == FailureProxyRefused && e.ProxyStatus != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.ProxyStatus)
	}
	return b.String()
}

func (e *TransportError) Unwrap() error { return e.Err }

// innermost is the last error of err's Unwrap chain.
// errServerClosedIdle is the text of net/http's unexported error for a
// connection the server closed before it answered (when the request was
// sent on it first, net/http cannot tell that from an idle one). It is
// Go's fixed text: nothing the server sent is in it.
const errServerClosedIdle = "http: server closed idle connection"

func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
