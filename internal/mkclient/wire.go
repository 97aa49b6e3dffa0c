package mkclient

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
)

// wire is the client's transport, the one place that knows what went onto
// the network. It counts every attempt, every request written and every
// connection dialled, and it keeps net/http from adding requests the engine
// did not decide on: the attempts the engine reports are the requests it
// sent.
type wire struct {
	t *http.Transport
	// attempts counts round trips, requests the requests written (all or
	// part) to a connection, conns the connections dialled (to the
	// upstream or to a proxy). Each attempt writes at most one request.
	attempts, requests, conns atomic.Int64
}

// WireStats is what the client did on the network since it was built.
type WireStats struct {
	// Attempts is the sum of the attempts the client reported.
	Attempts int64
	// Requests is how many requests were written to a connection.
	Requests int64
	// Connections is how many connections were dialled.
	Connections int64
}

// Wire reports what the client did on the network.
func (c *Client) Wire() WireStats {
	return WireStats{Attempts: c.wire.attempts.Load(), Requests: c.wire.requests.Load(), Connections: c.wire.conns.Load()}
}

// newWire sets up t for MetaKraftwerk and wraps it.
//
// HTTP/2 is off. MetaKraftwerk is a Feathers API served over HTTP/1.1, so
// HTTP/2 gains nothing, and Go's HTTP/2 client replays a request on its own
// when a server refuses a stream or says GOAWAY: a GOAWAY with last stream
// id 0 made one creds read send thousands of logins, each with the
// password, while the engine reported two attempts. No ALPN protocol is
// offered, so neither the upstream nor a TLS proxy (the TLS to either uses
// TLSClientConfig, whose NextProtos stays empty) can choose HTTP/2.
func newWire(t *http.Transport) *wire {
	w := &wire{t: t}
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	t.Protocols = protocols
	dial := t.DialContext
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		w.conns.Add(1)
		return dial(ctx, network, addr)
	}
	t.OnProxyConnectResponse = func(_ context.Context, _ *url.URL, _ *http.Request, resp *http.Response) error {
		if resp.StatusCode != http.StatusOK {
			return &proxyRefusedError{status: resp.StatusCode}
		}
		return nil
	}
	return w
}

// RoundTrip sends req once. net/http replays a request by itself, on
// another connection, when a reused one fails: any GET, and a request
// whose GetBody can rewind it. Here no request can be replayed (no
// GetBody, and a body that is never NoBody), so each attempt is one
// request at most and retries are the engine's own, bounded by
// max_retries and counted.
func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	w.attempts.Add(1)
	if s, ok := req.Context().Value(statsKey{}).(*callStats); ok {
		s.attempts.Add(1)
	}
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { w.requests.Add(1) },
	})
	r := req.WithContext(ctx) // a copy: a RoundTripper must not change req
	r.GetBody = nil
	if r.Body == nil || r.Body == http.NoBody {
		// net/http sends no body for a GET whose body is empty at once.
		r.Body = noReplay{}
	}
	return w.t.RoundTrip(r)
}

// noReplay is an empty body that net/http cannot tell is empty before it
// reads it, so it does not count the request as replayable.
type noReplay struct{}

func (noReplay) Read([]byte) (int, error) { return 0, io.EOF }
func (noReplay) Close() error             { return nil }

// proxyRefusedError is a proxy's answer other than 200 to CONNECT. Go's
// own error for it is the proxy's reason phrase, upstream text; this one
// carries only the status.
type proxyRefusedError struct{ status int }

func (e *proxyRefusedError) Error() string { return "the proxy refused the connection" }

// proxyStatus is the status a proxy refused CONNECT with, or 0.
func proxyStatus(err error) int {
	var p *proxyRefusedError
	if errors.As(err, &p) {
		return p.status
	}
	return 0
}
