package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/dsrlb/dsrlb/shared/config"
)

// maxBody bounds how much of an http check's body is read: enough to let
// small servers finish writing before we close, never a large download.
const maxBody = 4 << 10

// prober runs one check against one address. It must return within the
// context's deadline.
type prober interface {
	probe(ctx context.Context) error
}

func newProber(t Target) (prober, error) {
	switch t.Check.Type {
	case config.CheckTCP:
		return tcpProber{addr: t.Addr.String(), dial: dialerFor(t)}, nil
	case config.CheckHTTP:
		return newHTTPProber(t), nil
	default:
		return nil, fmt.Errorf("check %s: unknown check type %q (want tcp, http or none)", t.Key, t.Check.Type)
	}
}

// tcpProber succeeds when a TCP connection is established.
type tcpProber struct {
	addr string
	dial dialFunc
}

func (p tcpProber) probe(ctx context.Context) error {
	c, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return err
	}
	// Close with a RST, as HAProxy does: a graceful close would leave a
	// TIME_WAIT socket on the balancer for every check of every backend.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.Close()
}

// httpProber succeeds when GET path answers with the expected status.
type httpProber struct {
	client *http.Client
	url    string
	expect int
}

func newHTTPProber(t Target) httpProber {
	tr := &http.Transport{
		// Never a proxy from the environment: the check is about the backend.
		Proxy: nil,
		// A fresh connection per check: a kept-alive one would hide a
		// backend that stopped accepting connections.
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 16 << 10,
		DialContext:            dialerFor(t),
	}
	return httpProber{
		client: &http.Client{
			Transport: tr,
			// A redirect is an answer: judge its status, do not follow it
			// to some other host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		// The URL's host (the backend address) becomes the Host header.
		url:    "http://" + t.Addr.String() + t.Check.Path,
		expect: t.Check.ExpectStatus,
	}
}

func (p httpProber) probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("User-Agent", "dsrlb-lbd-check")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxBody)
	_ = resp.Body.Close()
	if resp.StatusCode != p.expect {
		return fmt.Errorf("GET %s: status %d, want %s", p.url, resp.StatusCode, strconv.Itoa(p.expect))
	}
	return nil
}
