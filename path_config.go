package metakraftwerk

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

const (
	configStorageKey = "config"

	defaultExpiryLeeway         = time.Minute
	defaultRejectedLoginBackoff = 5 * time.Minute
	maxRejectedLoginBackoff     = 24 * time.Hour
	maxRequestTimeout           = 5 * time.Minute
	maxMaxRetries               = 10
	// defaultMaxUpstreamTime stays below Vault's and OpenBao's default
	// max_request_duration of 90s.
	defaultMaxUpstreamTime = 85 * time.Second
	maxMaxUpstreamTime     = time.Hour
	// maxMetricsRoles bounds metrics_roles; a pattern may name many roles.
	maxMetricsRoles = 100
)

// mkConfig is the stored connection configuration. Nothing in it is secret.
type mkConfig struct {
	BaseURL        string        `json:"base_url"`
	CACert         string        `json:"ca_cert,omitempty"`
	RequestTimeout time.Duration `json:"request_timeout"`
	MaxRetries     int           `json:"max_retries"`
	ExpiryLeeway   time.Duration `json:"expiry_leeway"`
	// RejectedLoginBackoff is how long a rejected login (401) is
	// remembered per role; 0 turns the memory off.
	RejectedLoginBackoff time.Duration `json:"rejected_login_backoff"`
	// MaxUpstreamTime bounds what one request waits for MetaKraftwerk in
	// all (upstreamBudget).
	MaxUpstreamTime time.Duration `json:"max_upstream_time"`
	// MetricsRoles names the roles (names or path.Match patterns) that get
	// series of their own in the metrics.
	MetricsRoles []string `json:"metrics_roles,omitempty"`
}

func defaultConfig() *mkConfig {
	return &mkConfig{
		BaseURL:        mkclient.DefaultBaseURL,
		RequestTimeout: mkclient.DefaultRequestTimeout,
		MaxRetries:     mkclient.DefaultMaxRetries,
		ExpiryLeeway:   defaultExpiryLeeway,

		RejectedLoginBackoff: defaultRejectedLoginBackoff,
		MaxUpstreamTime:      defaultMaxUpstreamTime,
	}
}

// newClient builds the client of this configuration; onRetry is called
// before each repeated attempt.
func (c *mkConfig) newClient(onRetry func()) (*mkclient.Client, error) {
	client, err := mkclient.New(mkclient.Config{
		BaseURL:        c.BaseURL,
		CACertPEM:      c.CACert,
		RequestTimeout: c.RequestTimeout,
		MaxRetries:     c.MaxRetries,
		UserAgent:      "vault-plugin-secrets-metakraftwerk/" + Version,
		OnRetry:        onRetry,
	})
	if err != nil {
		return nil, fmt.Errorf("the stored config is unusable: %w; write config to fix it", err)
	}
	return client, nil
}

func (c *mkConfig) toResponseData() map[string]any {
	metricsRoles := c.MetricsRoles
	if metricsRoles == nil {
		metricsRoles = []string{}
	}
	return map[string]any{
		fieldBaseURL:        c.BaseURL,
		fieldCACert:         c.CACert,
		fieldRequestTimeout: int64(c.RequestTimeout / time.Second),
		fieldMaxRetries:     c.MaxRetries,
		fieldExpiryLeeway:   int64(c.ExpiryLeeway / time.Second),

		fieldRejectedLoginBackoff: int64(c.RejectedLoginBackoff / time.Second),
		fieldMaxUpstreamTime:      int64(c.MaxUpstreamTime / time.Second),
		fieldMetricsRoles:         metricsRoles,
	}
}

// getConfig returns the stored configuration, or (nil, nil) when none is stored.
func getConfig(ctx context.Context, s logical.Storage) (*mkConfig, error) {
	entry, err := s.Get(ctx, configStorageKey)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	cfg := defaultConfig()
	if err := entry.DecodeJSON(cfg); err != nil {
		// encoding/json's text may quote a byte of the stored entry.
		return nil, errors.New("decoding config failed: the stored entry is not one this engine wrote")
	}
	// An earlier version may have stored a spelling that is no longer
	// accepted; show the normalised one. The client normalises again and
	// refuses what does not validate, whatever is stored.
	if u, err := mkclient.ValidateBaseURL(cfg.BaseURL); err == nil {
		cfg.BaseURL = u
	}
	return cfg, nil
}

// effectiveConfig is the stored configuration, or the defaults.
func effectiveConfig(ctx context.Context, s logical.Storage) (*mkConfig, error) {
	cfg, err := getConfig(ctx, s)
	if err != nil || cfg != nil {
		return cfg, err
	}
	return defaultConfig(), nil
}

func putConfig(ctx context.Context, s logical.Storage, cfg *mkConfig) error {
	entry, err := logical.StorageEntryJSON(configStorageKey, cfg)
	if err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing config: %w", err)
	}
	return nil
}

func pathConfig(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			fieldBaseURL: {
				Type: framework.TypeString,
				Description: "MetaKraftwerk's host root; the login goes to <base_url>/authentication, API calls to <base_url>/api/v1/…. " +
					"https is required except for loopback hosts (localhost, 127.0.0.0/8, ::1). No credentials, query or fragment; " +
					"brackets only around an IPv6 literal. Stored normalised: lower-case host, a loopback host without a trailing dot, " +
					"no trailing slash (http://LOCALHOST.:8787/ becomes http://localhost:8787), because only that spelling is exempt " +
					"from HTTP_PROXY and a login must never reach a proxy in clear text. A stored value is normalised and checked again on every use.",
				Default: mkclient.DefaultBaseURL,
			},
			fieldCACert: {
				Type:        framework.TypeString,
				Description: "PEM bundle of CA certificates (no other blocks) that replaces the system roots for MetaKraftwerk. An empty value clears it.",
			},
			fieldRequestTimeout: {
				Type: framework.TypeDurationSecond,
				Description: fmt.Sprintf("One upstream attempt (connect, headers, body); at least 1s, at most %s. "+
					"Durations are whole seconds: 500ms is refused.", formatDuration(maxRequestTimeout)),
				Default: int(mkclient.DefaultRequestTimeout / time.Second),
			},
			fieldMaxRetries: {
				Type: framework.TypeInt,
				Description: fmt.Sprintf("0 to %d. Retried: connection errors, 429, 500, 502, 503, 504, with exponential backoff from %s to %s "+
					"that honours Retry-After (seconds or an HTTP date, at most %s), always within max_upstream_time. "+
					"Never retried: the rejections 400, 401, 403, 404, 422, and TLS failures.",
					maxMaxRetries, formatDuration(mkclient.RetryWaitMin), formatDuration(mkclient.RetryWaitMax), formatDuration(mkclient.MaxRetryAfter)),
				Default: mkclient.DefaultMaxRetries,
			},
			fieldExpiryLeeway: {
				Type: framework.TypeDurationSecond,
				Description: fmt.Sprintf("A lease ends this long before the token's exp (clock skew, requests in flight); "+
					"less than the %s token lifetime.", formatDuration(documentedTokenLifetime)),
				Default: int(defaultExpiryLeeway / time.Second),
			},
			fieldRejectedLoginBackoff: {
				Type: framework.TypeDurationSecond,
				Description: fmt.Sprintf("After MetaKraftwerk rejects a role's login (401), creds reads get the same error and verify-role a 429, "+
					"without a new attempt, for this long (across plugin reloads too) or until the role's email or password is written; 0 turns it off; at most %s. "+
					"A write applies to the rejections remembered already, in storage too: each then ends at most this long after it was tried "+
					"(a lower value shortens them, a higher one does not lengthen them), and 0 forgets them.",
					formatDuration(maxRejectedLoginBackoff)),
				Default: int(defaultRejectedLoginBackoff / time.Second),
			},
			fieldMaxUpstreamTime: {
				Type: framework.TypeDurationSecond,
				Description: fmt.Sprintf("The longest one request waits for MetaKraftwerk in all: attempts, retries and Retry-After waits, "+
					"and the project check's pages. A request that runs out answers 504. Vault and OpenBao cancel a request at "+
					"their max_request_duration (90s by default) without telling the plugin, so keep this below it. "+
					"At least 1s, at most %s.", formatDuration(maxMaxUpstreamTime)),
				Default: int(defaultMaxUpstreamTime / time.Second),
			},
			fieldMetricsRoles: {
				Type: framework.TypeCommaStringSlice,
				Description: fmt.Sprintf("Roles that get metrics series of their own (metakraftwerk_role_*, labelled role), "+
					"besides the series of all roles together: role names or glob patterns (*, ?, [a-z]), at most %d, comma-separated "+
					"on the CLI. Empty keeps the scrape the same size whatever the number of roles; every role a "+
					"pattern names adds up to 10 series. An empty value clears it.", maxMetricsRoles),
			},
		},
		ExistenceCheck: b.pathConfigExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathConfigRead,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "configuration"},
				Responses: map[int][]framework.Response{
					200: {{Description: "OK", Fields: configResponseFields}},
				},
			},
			logical.CreateOperation: &framework.PathOperation{
				Callback:     b.pathConfigWrite,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "configure"},
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:     b.pathConfigWrite,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "configure"},
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback:     b.pathConfigDelete,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "delete", OperationSuffix: "configuration"},
			},
		},
		HelpSynopsis:    pathConfigHelpSyn,
		HelpDescription: pathConfigHelpDesc,
	}}
}

var configResponseFields = map[string]*framework.FieldSchema{
	fieldBaseURL:        {Type: framework.TypeString, Required: true},
	fieldCACert:         {Type: framework.TypeString, Required: true},
	fieldRequestTimeout: {Type: framework.TypeDurationSecond, Required: true},
	fieldMaxRetries:     {Type: framework.TypeInt, Required: true},
	fieldExpiryLeeway:   {Type: framework.TypeDurationSecond, Required: true},

	fieldRejectedLoginBackoff: {Type: framework.TypeDurationSecond, Required: true},
	fieldMaxUpstreamTime:      {Type: framework.TypeDurationSecond, Required: true},
	fieldMetricsRoles:         {Type: framework.TypeCommaStringSlice, Required: true},
	fieldStored: {Type: framework.TypeBool, Required: true,
		Description: "Whether a config is stored; false: nothing was written since the mount was enabled or the config deleted, and these are the defaults."},
}

func (b *backend) pathConfigExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := getConfig(ctx, req.Storage)
	return cfg != nil, err
}

// pathConfigRead answers the config in force, and whether it was written:
// a client that must not take over a config someone wrote (the Terraform
// provider's create) cannot tell that from the values.
func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := getConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	stored := cfg != nil
	if !stored {
		cfg = defaultConfig()
	}
	data := cfg.toResponseData()
	data[fieldStored] = stored
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.configLock.Lock()
	defer b.configLock.Unlock()
	cfg, err := effectiveConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	oldBaseURL := cfg.BaseURL
	var p problems
	unknownFields(d, &p)
	applyConfigFields(cfg, d, &p)
	if resp := p.response(); resp != nil {
		return resp, nil
	}
	// Reset whatever storage answered: a put that failed may still have
	// been applied.
	err = putConfig(ctx, req.Storage, cfg)
	b.configChanged(oldBaseURL != cfg.BaseURL)
	if oldBaseURL != cfg.BaseURL {
		b.forgetStoredRejections(ctx, req.Storage, "")
	} else if _, ok := d.GetOk(fieldRejectedLoginBackoff); ok && err == nil {
		// "0 turns it off" and a lower backoff hold for what is
		// remembered already, not only for the next rejection.
		b.capRejections(ctx, req.Storage, cfg.RejectedLoginBackoff)
	}
	b.metrics.setNamed(cfg.MetricsRoles)
	return nil, err
}

// applyConfigFields copies the fields present in d onto cfg, validating each.
func applyConfigFields(cfg *mkConfig, d *framework.FieldData, p *problems) {
	if v, ok := d.GetOk(fieldBaseURL); ok {
		u, err := mkclient.ValidateBaseURL(v.(string))
		if err != nil {
			p.add(fieldBaseURL, "%v", err)
		} else {
			cfg.BaseURL = u
		}
	}
	if v, ok := d.GetOk(fieldCACert); ok {
		pemText := strings.TrimSpace(v.(string))
		if pemText != "" {
			if _, err := mkclient.ParseCAPool(pemText); err != nil {
				p.add(fieldCACert, "%v", err)
			}
		}
		cfg.CACert = pemText
	}
	if v, ok := d.GetOk(fieldRequestTimeout); ok {
		t := time.Duration(v.(int)) * time.Second
		switch {
		case t < time.Second: // 500ms arrives as 0: durations are whole seconds
			p.add(fieldRequestTimeout, "must be at least 1s (durations are whole seconds)")
		case t > maxRequestTimeout:
			p.add(fieldRequestTimeout, "must be at most %s", formatDuration(maxRequestTimeout))
		default:
			cfg.RequestTimeout = t
		}
	}
	if v, ok := d.GetOk(fieldMaxRetries); ok {
		n := v.(int)
		if n < 0 || n > maxMaxRetries {
			p.add(fieldMaxRetries, "must be between 0 and %d, got %d", maxMaxRetries, n)
		} else {
			cfg.MaxRetries = n
		}
	}
	if v, ok := d.GetOk(fieldExpiryLeeway); ok {
		l := time.Duration(v.(int)) * time.Second
		switch {
		case l >= documentedTokenLifetime:
			p.add(fieldExpiryLeeway, "must be less than the %s token lifetime", formatDuration(documentedTokenLifetime))
		default:
			cfg.ExpiryLeeway = l
		}
	}
	if v, ok := d.GetOk(fieldMaxUpstreamTime); ok {
		m := time.Duration(v.(int)) * time.Second
		switch {
		case m < time.Second:
			p.add(fieldMaxUpstreamTime, "must be at least 1s")
		case m > maxMaxUpstreamTime:
			p.add(fieldMaxUpstreamTime, "must be at most %s", formatDuration(maxMaxUpstreamTime))
		default:
			cfg.MaxUpstreamTime = m
		}
	}
	if v, ok := d.GetOk(fieldMetricsRoles); ok {
		cfg.MetricsRoles = checkMetricsRoles(v.([]string), p)
	}
	if v, ok := d.GetOk(fieldRejectedLoginBackoff); ok {
		w := time.Duration(v.(int)) * time.Second
		switch {
		case w > maxRejectedLoginBackoff:
			p.add(fieldRejectedLoginBackoff, "must be at most %s", formatDuration(maxRejectedLoginBackoff))
		default:
			cfg.RejectedLoginBackoff = w
		}
	}
}

// checkMetricsRoles trims and checks metrics_roles: each a role name or a
// path.Match pattern over role names.
func checkMetricsRoles(in []string, p *problems) []string {
	var out []string
	for i, pat := range in {
		pat = strings.TrimSpace(pat)
		switch {
		case pat == "":
			continue
		case len(pat) > maxRoleNameLen:
			p.add(fieldMetricsRoles, "entry %d is longer than %d characters", i+1, maxRoleNameLen)
		case unsafeText(pat) != "":
			p.add(fieldMetricsRoles, "entry %d %s", i+1, unsafeText(pat))
		default:
			// A '/' never matches: role names have none.
			if _, err := path.Match(pat, ""); err != nil || strings.Contains(pat, "/") {
				p.add(fieldMetricsRoles, "entry %d %q is not a role name or a glob pattern (*, ?, [a-z]) of role names", i+1, pat)
				continue
			}
			if !slices.Contains(out, pat) {
				out = append(out, pat)
			}
		}
	}
	if len(out) > maxMetricsRoles {
		p.add(fieldMetricsRoles, "at most %d entries, got %d", maxMetricsRoles, len(out))
	}
	return out
}

func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.configLock.Lock()
	defer b.configLock.Unlock()
	// A stored config that no longer reads is deleted all the same.
	old, readErr := effectiveConfig(ctx, req.Storage)
	err := req.Storage.Delete(ctx, configStorageKey)
	b.configChanged(readErr != nil || old.BaseURL != mkclient.DefaultBaseURL)
	if readErr != nil || old.BaseURL != mkclient.DefaultBaseURL {
		b.forgetStoredRejections(ctx, req.Storage, "")
	}
	b.metrics.setNamed(nil)
	if err != nil {
		return nil, fmt.Errorf("deleting config: %w", err)
	}
	return nil, nil
}

const pathConfigHelpSyn = `Configure how the engine reaches MetaKraftwerk.`

const pathConfigHelpDesc = `
Optional. Without a stored configuration the engine talks to
https://app.metakraftwerk.com with a 30s timeout per attempt, 3 retries,
at most 85s of upstream time per request, a 1m expiry leeway and a 5m
rejected_login_backoff. Updates are partial; deleting the configuration
restores the defaults. Nothing in the configuration is secret, so a read returns all of it.

Writing the configuration drops the engine's HTTP client and any shared
tokens; the next request uses the new settings. A new base_url forgets the
remembered rejected logins; a write of rejected_login_backoff shortens them
to the new value (0 forgets them).
`
