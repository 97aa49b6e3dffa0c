package mkclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

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
	// Location is set for redirects: the target's scheme and host only.
	Location string
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
	if e.Location != "" {
		return fmt.Sprintf("MetaKraftwerk answered the %s request with HTTP %d and a redirect to %s (path and query not shown); redirects are not followed so that credentials are never sent elsewhere (check base_url)",
			e.Op, e.StatusCode, e.Location)
	}
	s := fmt.Sprintf("MetaKraftwerk answered the %s request with %s: %s", e.Op, e.Status(), e.Message)
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	return s
}

// Is lets errors.Is(err, ErrRedirect) match redirect answers.
func (e *APIError) Is(target error) bool {
	return target == ErrRedirect && e.Location != ""
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

// TransportError is a failure to get any answer: connection refused, timeout,
// TLS verification failure, or the caller's deadline while waiting to retry.
type TransportError struct {
	Op       string
	Attempts int
	// LastStatus is the status of the last answer, if a retryable answer
	// (429, 5xx) came before the final failure.
	LastStatus int
	// Deadline is set when the caller's context ended the call, rather
	// than the per-attempt timeout or the network.
	Deadline bool
	Err      error
}

func (e *TransportError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "could not reach MetaKraftwerk for the %s request", e.Op)
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
	fmt.Fprintf(&b, ": %s", describeTransportErr(e.Err))
	return b.String()
}

func (e *TransportError) Unwrap() error { return e.Err }

func describeTransportErr(err error) string {
	if problem := tlsProblem(err); problem != "" {
		return problem + ": " + err.Error()
	}
	if isTimeout(err) {
		return "timed out (request_timeout): " + err.Error()
	}
	return err.Error()
}

// tlsProblem names a TLS failure that is a configuration error, or returns
// "" when err is not one. Such failures are never retried: asking again
// will not help.
func tlsProblem(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownCA):
		return "TLS certificate signed by an unknown authority (set ca_cert to trust a private CA)"
	case errors.As(err, &hostErr):
		return "TLS certificate does not match the host name in base_url"
	case errors.As(err, &invalid):
		return "TLS certificate is invalid"
	case errors.As(err, &verifyErr):
		return "TLS certificate verification failed"
	// net/http reports a plain-HTTP answer to a TLS handshake as
	// ErrSchemeMismatch; other non-TLS answers arrive as a RecordHeaderError.
	case errors.Is(err, http.ErrSchemeMismatch), errors.As(err, &recordErr):
		return "the server did not answer with TLS (base_url says https; is the server plain http?)"
	}
	return ""
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
