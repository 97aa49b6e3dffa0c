package mkclient

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ValidateBaseURL checks and normalises a base URL: absolute, http(s), https
// unless the host is loopback, no credentials, query or fragment. The host
// is lower-cased and a loopback host loses its trailing dot, so that
// "http://LOCALHOST.:8080" becomes "http://localhost:8080": Go's proxy
// logic exempts only that exact spelling and IP literals from HTTP_PROXY,
// and a login must never travel through a proxy in clear text. The returned
// URL has no trailing slash.
func ValidateBaseURL(raw string) (string, error) {
	u, err := parseBaseURL(raw)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// parseBaseURL is ValidateBaseURL's check and normalisation, returning the
// URL itself (New needs its host as well).
func parseBaseURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("must not be empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errNotAURL
	}
	switch {
	case !u.IsAbs() || u.Hostname() == "":
		return nil, errors.New("must be an absolute URL such as https://app.metakraftwerk.com")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("scheme %q is not supported; use https", u.Scheme)
	case u.User != nil:
		return nil, errors.New("must not contain credentials")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("must not contain a query")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("must not contain a fragment")
	case (strings.ContainsAny(u.Host, "[]") || strings.Contains(u.Hostname(), ":")) && !bracketedIPv6(u.Host):
		return nil, fmt.Errorf("host %q is not valid: an IPv6 address is written in brackets, such as [::1], and brackets are for nothing else", u.Host)
	case u.Port() != "" && !validPort(u.Port()):
		return nil, fmt.Errorf("port %q is not valid", u.Port())
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		return nil, fmt.Errorf("must use https; http is allowed only for loopback hosts (localhost, 127.0.0.0/8, ::1), not %q", u.Hostname())
	}
	host := strings.ToLower(u.Hostname())
	if IsLoopbackHost(host) {
		host = strings.TrimSuffix(host, ".")
	}
	if port := u.Port(); port != "" {
		u.Host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		u.Host = "[" + host + "]"
	} else {
		u.Host = host
	}
	return u, nil
}

// bracketedIPv6 reports whether host is "[<IPv6 address>]" with an optional
// ":port" and no other bracket.
func bracketedIPv6(host string) bool {
	end := strings.IndexByte(host, ']')
	if !strings.HasPrefix(host, "[") || end < 0 || strings.Count(host, "[") != 1 || strings.Count(host, "]") != 1 {
		return false
	}
	ip := net.ParseIP(host[1:end])
	rest := host[end+1:]
	return ip != nil && strings.Contains(host[1:end], ":") && (rest == "" || strings.HasPrefix(rest, ":"))
}

// errNotAURL is any url.Parse failure: its text quotes the input, which
// may hold credentials, and is not repeated.
var errNotAURL = errors.New("is not a valid URL; give scheme, host, optional port and path, such as https://app.metakraftwerk.com")

func validPort(p string) bool {
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	n := 0
	for _, r := range p {
		if r < '0' || r > '9' {
			return false
		}
		n = n*10 + int(r-'0')
	}
	return n > 0 && n <= 65535
}

// IsLoopbackHost reports whether host is localhost, in 127.0.0.0/8 or ::1,
// in any letter case and with or without a trailing dot.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
