package metakraftwerk

import (
	"errors"
	"fmt"
	"testing"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// An error whose text the engine did not write is never rendered, however
// it arrives: the text of a library's error may quote what an upstream
// sent.
func TestRoleErrorShowsOnlyItsOwnWords(t *testing.T) {
	foreign := errors.New("malformed MIME header: missing colon: \"the-password\"")
	for _, err := range []error{foreign, fmt.Errorf("wrapped: %w", foreign), &mkclient.FieldError{Field: "x", Err: foreign}} {
		for _, op := range []string{opLogin, opProjects} {
			got := (&roleError{role: "ci", op: op, err: err}).Error()
			want := map[string]string{
				opLogin:    `getting a MetaKraftwerk token for role "ci" failed: an unexpected error (its text is not shown)`,
				opProjects: `listing the projects of role "ci" failed: an unexpected error (its text is not shown)`,
			}[op]
			if got != want {
				t.Errorf("%s: %q, want %q", op, got, want)
			}
		}
	}
	// The client's own errors are shown.
	own := &mkclient.TransportError{Op: "login", Host: "mk.example.com", Attempts: 1, Failure: mkclient.FailureNotHTTP, Err: foreign}
	if got := (&roleError{role: "ci", op: opLogin, err: own}).Error(); got != `getting a MetaKraftwerk token for role "ci" failed: MetaKraftwerk gave no usable answer to the login request (1 attempt): the answer from mk.example.com was not valid HTTP` {
		t.Errorf("%q", got)
	}
}
