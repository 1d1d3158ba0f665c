package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/dsrlb/dsrlb/shared/config"
)

// maxBody bounds how much of an http check's body is read: enough to let
// small servers finish writing before we close, never a large download.
const maxBody = config.MaxCheckBody

// prober runs one check against one address. It must return within the
// context's deadline.
type prober interface {
	probe(ctx context.Context) error
}

func newProber(t Target) (prober, error) {
	switch t.Check.Type {
	case config.CheckTCP:
		return tcpProber{addr: t.Addr.String(), dial: dialerFor(t)}, nil
	case config.CheckHTTP, config.CheckHTTPS:
		return newHTTPProber(t), nil
	case config.CheckUDP:
		return udpProber{addr: t.Addr.String(), send: []byte(t.Check.Send), expect: []byte(t.Check.Expect)}, nil
	case config.CheckDNS:
		return newDNSProber(t), nil
	case config.CheckExec:
		return newExecProber(t), nil
	default:
		return nil, fmt.Errorf("check %s: unknown check type %q (want tcp, http, https, udp, dns, exec or none)", t.Key, t.Check.Type)
	}
}

// failing is a prober whose every check fails with err: a check that
// cannot be set up (an https check whose ca_file went away since the
// configuration was validated) shows why as the backend's down reason.
type failing struct{ err error }

func (p failing) probe(context.Context) error { return p.err }

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

// httpProber succeeds when the request answers with the expected status
// and, when asked, a body containing the expected text.
type httpProber struct {
	client *http.Client
	url    string
	method string
	host   string // Host header; "" = the URL's (the checked address)
	expect int
	body   string // expected substring of the body; "" = not looked at
}

func newHTTPProber(t Target) prober {
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
	scheme := "http"
	if t.Check.Type == config.CheckHTTPS {
		scheme = "https"
		tr.DialTLSContext = tlsDialer(t)
	}
	method := t.Check.Method
	if method == "" {
		method = http.MethodGet
	}
	return httpProber{
		client: &http.Client{
			Transport: tr,
			// A redirect is an answer: judge its status, do not follow it
			// to some other host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		// The URL's host (the backend address) becomes the Host header
		// unless check.host names another.
		url:    scheme + "://" + t.Addr.String() + t.Check.Path,
		method: method,
		host:   t.Check.Host,
		expect: t.Check.ExpectStatus,
		body:   t.Check.ExpectBody,
	}
}

func (p httpProber) probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, p.method, p.url, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("User-Agent", "dsrlb-lbd-check")
	if p.host != "" {
		req.Host = p.host
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return explainHTTP(err)
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	if resp.StatusCode != p.expect {
		return fmt.Errorf("%s %s: status %d, want %s", p.method, p.url, resp.StatusCode, strconv.Itoa(p.expect))
	}
	if p.body == "" {
		return nil
	}
	if rerr != nil {
		return fmt.Errorf("%s %s: read body: %w", p.method, p.url, rerr)
	}
	if !bytes.Contains(body, []byte(p.body)) {
		return fmt.Errorf("%s %s: status %d but the body (first %d bytes read) lacks %q: is it the right page (check.path, check.host)?", p.method, p.url, resp.StatusCode, len(body), p.body)
	}
	return nil
}

// explainHTTP unwraps the *url.Error of http.Client.Do, whose text repeats
// method and URL, when the cause (a TLS error) already says it.
func explainHTTP(err error) error {
	var te *tlsError
	if errors.As(err, &te) {
		return te
	}
	return err
}
