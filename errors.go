package metakraftwerk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// Every error the engine writes follows one scheme:
//   - bad input starts with the field it is about: "ttl: 2h must not exceed max_ttl 1h";
//   - anything else is a sentence that names the role in quotes;
//   - a step of a larger request prefixes its name: "verify: ...".
// No message carries a password or a token.

// The upstream calls a roleError can come from.
const (
	opLogin    = "login"
	opProjects = "list projects"
)

// roleError is a failed upstream step for a role, worded for the operator.
type roleError struct {
	role string
	op   string
	err  error
}

func (e *roleError) Unwrap() error { return e.err }

func (e *roleError) Error() string {
	cause := ownText(e.err)
	var apiErr *mkclient.APIError
	var tooShort *errTokenTooShort
	var waited *errWaitAborted
	var timeout *errUpstreamTimeout
	rejected := errors.As(e.err, &apiErr) && apiErr.Rejected()
	switch {
	case rejected && e.op == opProjects:
		return fmt.Sprintf("MetaKraftwerk refused to list the projects of role %q (%s): %s", e.role, apiErr.Status(), apiErr.Message)
	case rejected && apiErr.StatusCode == http.StatusUnauthorized:
		return fmt.Sprintf("MetaKraftwerk rejected the login for role %q: %s", e.role, apiErr.Message)
	case rejected && apiErr.StatusCode == http.StatusNotFound:
		return fmt.Sprintf("MetaKraftwerk has no login endpoint at the configured %s (%s for role %q): %s; check %s",
			fieldBaseURL, apiErr.Status(), e.role, apiErr.Message, fieldBaseURL)
	case rejected:
		return fmt.Sprintf("MetaKraftwerk rejected the login for role %q (%s): %s", e.role, apiErr.Status(), apiErr.Message)
	case errors.As(e.err, &timeout):
		return fmt.Sprintf("MetaKraftwerk did not answer within %s for role %q (max_upstream_time, or the request's own deadline); %s",
			roundBudget(timeout.budget), e.role, timeout.hint())
	case errors.As(e.err, &tooShort):
		return fmt.Sprintf("role %q: %s", e.role, tooShort)
	case errors.As(e.err, &waited):
		return fmt.Sprintf("gave up after %s waiting for the shared MetaKraftwerk login of role %q: %s",
			waited.after.Round(time.Millisecond), e.role, describeContextErr(waited.err))
	case errors.Is(e.err, mkclient.ErrTooManyProjects):
		return fmt.Sprintf("cannot check the projects of role %q: %s; store the role with %s=false to skip the check", e.role, cause, fieldVerify)
	case e.op == opProjects:
		return fmt.Sprintf("listing the projects of role %q failed: %s", e.role, cause)
	case errors.Is(e.err, context.Canceled):
		return fmt.Sprintf("getting a MetaKraftwerk token for role %q was cancelled", e.role)
	}
	return fmt.Sprintf("getting a MetaKraftwerk token for role %q failed: %s", e.role, cause)
}

// errNotOurs stands in for an error whose text the engine did not write.
var errNotOurs = errors.New("an unexpected error (its text is not shown)")

// ownText is err when its text is one of the engine's own templates (the
// client's typed errors and sentinels, the engine's own types), else
// errNotOurs: a text built elsewhere may quote what an upstream sent.
func ownText(err error) error {
	var apiErr *mkclient.APIError
	var transport *mkclient.TransportError
	var timeout *errUpstreamTimeout
	var tooShort *errTokenTooShort
	var waited *errWaitAborted
	var missing *errMissingProjects
	for _, sentinel := range []error{mkclient.ErrMalformedResponse, mkclient.ErrNotAJWT, mkclient.ErrResponseTooLarge,
		mkclient.ErrTooManyProjects, mkclient.ErrRequest} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	if errors.As(err, &apiErr) || errors.As(err, &transport) || errors.As(err, &timeout) || errors.As(err, &tooShort) ||
		errors.As(err, &waited) || errors.As(err, &missing) {
		return err
	}
	return errNotOurs
}

// errUpstreamTimeout is the upstream budget of a request (upstreamBudget)
// running out: MetaKraftwerk, or the retries and waits it asked for, took
// longer than the Vault request can wait.
type errUpstreamTimeout struct {
	budget time.Duration
	// shared is set when the reader waited for a login shared with other
	// readers, which goes on and serves the next one.
	shared bool
}

func (e *errUpstreamTimeout) Error() string {
	return fmt.Sprintf("MetaKraftwerk did not answer within %s", roundBudget(e.budget))
}

// roundBudget rounds a budget to what a reader needs: seconds, or
// milliseconds below one.
func roundBudget(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

func (e *errUpstreamTimeout) hint() string {
	if e.shared {
		return "the login goes on and serves the next reader; retry"
	}
	return "check MetaKraftwerk's status; lower request_timeout and max_retries so that a login's attempts fit"
}

// loginRejection is a login MetaKraftwerk rejected (401), remembered for
// rejected_login_backoff so that a burst of readers does not repeat it.
type loginRejection struct {
	err       *roleError
	at, until time.Time
	// seq is the start number of the rejected login (backend.loginSeq).
	seq uint64
	// early is set when the rejected login was an early retry
	// (verify-role with retry_now), which is then not allowed again
	// before until.
	early bool
}

func (r *loginRejection) Unwrap() error { return r.err }

func (r *loginRejection) Error() string {
	return fmt.Sprintf("%s (last tried at %s; no new attempt before %s unless the role's email or password is written)",
		r.err, r.at.UTC().Format(time.RFC3339), r.until.UTC().Format(time.RFC3339))
}

// refusedVerify is the 429 text of verify-role while r is remembered.
func (r *loginRejection) refusedVerify(role string) string {
	if r.early {
		return fmt.Sprintf("%s; the early retry (retry_now) was rejected too, and verify-role sends no new login before %s so that "+
			"repeated checks cannot lock the account out. If the password in Vault is wrong, write the role's password",
			r.err, r.until.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s; verify-role sends no new login before %s so that repeated checks cannot lock the account out. "+
		"If the account was fixed in MetaKraftwerk, write verify-role/%s with retry_now=true to try once now; "+
		"if the password in Vault is wrong, write the role's password",
		r.err, r.until.UTC().Format(time.RFC3339), role)
}

// errWaitAborted ends a reader that stopped waiting for a login shared with
// other readers (its request was cancelled or reached its deadline).
type errWaitAborted struct {
	after time.Duration
	err   error
}

func (e *errWaitAborted) Error() string { return describeContextErr(e.err) }

func describeContextErr(err error) string {
	if errors.Is(err, context.Canceled) {
		return "the Vault request was cancelled"
	}
	return "the Vault request's deadline was reached"
}

// errMissingProjects is a verified login that cannot see projects the role
// names.
type errMissingProjects struct {
	role, email string
	missing     []string
}

func (e *errMissingProjects) Error() string {
	return fmt.Sprintf("the login of role %q (%s) cannot use MetaKraftwerk project(s) %s; grant access in MetaKraftwerk or fix %s",
		e.role, e.email, strings.Join(e.missing, ", "), fieldProjects)
}

// errorResponse maps a failure of the creds path, or of a role's
// verification, to Vault's error contract: what MetaKraftwerk refused or
// the role's own settings prevent is the operator's to fix (400); no answer
// within the request's time is 504; anything else went wrong upstream
// (502). Storage failures never get here: their handlers return them as
// they are (500).
func errorResponse(err error) (*logical.Response, error) {
	var apiErr *mkclient.APIError
	var missing *errMissingProjects
	var timeout *errUpstreamTimeout
	switch {
	case (errors.As(err, &apiErr) && apiErr.Rejected()) || errors.As(err, &missing) ||
		errors.Is(err, mkclient.ErrTooManyProjects):
		return logical.ErrorResponse(err.Error()), nil
	case errors.As(err, &timeout):
		return nil, logical.CodedError(http.StatusGatewayTimeout, err.Error())
	}
	return nil, logical.CodedError(http.StatusBadGateway, err.Error())
}

// tooManyRequests answers 429 with a Retry-After header and retry_after
// (whole seconds) beside the error, for a request the engine refuses to
// pass on to MetaKraftwerk for now.
func tooManyRequests(msg string, retryAfter time.Duration) *logical.Response {
	secs := int64((retryAfter + time.Second - 1) / time.Second)
	body, _ := json.Marshal(map[string]any{
		"errors": []string{msg},
		"data":   map[string]any{fieldRetryAfter: secs},
	})
	return &logical.Response{
		Data: map[string]any{
			logical.HTTPStatusCode:  http.StatusTooManyRequests,
			logical.HTTPContentType: "application/json",
			logical.HTTPRawBody:     body,
		},
		Headers: map[string][]string{"Retry-After": {strconv.FormatInt(secs, 10)}},
	}
}
