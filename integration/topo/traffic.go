package topo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Ports the test servers listen on.
const (
	HTTPPort = 80
	UDPPort  = 5353
)

// StartServers starts dsrlb-testsrv on every backend: HTTP on HTTPPort and
// a UDP echo on UDPPort, both answering "backend=<role> client=<addr>".
func (t *Topology) StartServers(ctx context.Context) (map[string]*Proc, error) {
	ps := map[string]*Proc{}
	for _, b := range t.Backends {
		p, err := t.StartServer(ctx, b)
		if err != nil {
			return ps, err
		}
		ps[b.Role] = p
	}
	return ps, nil
}

// StartServer starts dsrlb-testsrv on one backend and waits until it
// listens.
func (t *Topology) StartServer(ctx context.Context, b *Host) (*Proc, error) {
	p, err := t.Start(b, "testsrv "+b.Role, t.Bins.TestSrv, "-name", b.Role,
		"-http", fmt.Sprint(HTTPPort), "-udp", fmt.Sprint(UDPPort))
	if err != nil {
		return nil, err
	}
	if err := p.WaitOutput(ctx, "ready", 10*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// StartServerOn starts dsrlb-testsrv on backend b with HTTP listening
// only on addr (not on the VIPs) and waits until it listens.
func (t *Topology) StartServerOn(ctx context.Context, b *Host, addr netip.Addr) (*Proc, error) {
	p, err := t.Start(b, "testsrv "+b.Role+" on "+addr.String(), t.Bins.TestSrv, "-name", b.Role,
		"-http", fmt.Sprint(HTTPPort), "-bind", addr.String())
	if err != nil {
		return nil, err
	}
	if err := p.WaitOutput(ctx, "ready", 10*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// Answer is what a test server said: which backend, which client address
// it saw.
type Answer struct {
	Backend string
	Client  string // ip:port as the backend saw it
	Err     error
}

// ClientIP is the address part of Client.
func (a Answer) ClientIP() netip.Addr {
	ap, err := netip.ParseAddrPort(a.Client)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ParseAnswer reads "backend=b1 client=192.0.2.1:4242".
func ParseAnswer(s string) Answer {
	var a Answer
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "backend":
			a.Backend = v
		case "client":
			a.Client = v
		}
	}
	if a.Backend == "" {
		a.Err = fmt.Errorf("unexpected answer %q", s)
	}
	return a
}

// HTTPClient returns a client whose connections are made from h's
// namespace. keepAlive false makes every request a new connection (a new
// flow for the balancer).
func (h *Host) HTTPClient(keepAlive bool, local netip.Addr) *http.Client {
	var la net.Addr
	if local.IsValid() {
		la = &net.TCPAddr{IP: local.AsSlice()}
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return h.NS.DialFrom(ctx, la, network, addr)
		},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     0,
	}
	return &http.Client{Transport: tr, Timeout: 3 * time.Second}
}

// URL of the test server's HTTP port at addr.
func URL(addr netip.Addr, path string) string {
	return "http://" + netip.AddrPortFrom(addr, HTTPPort).String() + path
}

// Get does one GET and parses the answer.
func Get(ctx context.Context, c *http.Client, url string) Answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Answer{Err: err}
	}
	resp, err := c.Do(req)
	if err != nil {
		return Answer{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{Err: fmt.Errorf("read body: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		return Answer{Err: fmt.Errorf("status %s: %s", resp.Status, body)}
	}
	return ParseAnswer(string(body))
}

// UDPAsk sends one datagram from a new socket in h's namespace (a new flow)
// and waits for the echo.
func (h *Host) UDPAsk(ctx context.Context, to netip.AddrPort, timeout time.Duration) Answer {
	c, err := h.NS.DialContext(ctx, "udp", to.String())
	if err != nil {
		return Answer{Err: err}
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	_ = c.SetDeadline(deadline)
	buf := make([]byte, 512)
	// Resend once in a while: the first datagram may race neighbour
	// resolution.
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte("hello")); err != nil {
			return Answer{Err: err}
		}
		_ = c.SetReadDeadline(minTime(deadline, time.Now().Add(300*time.Millisecond)))
		n, err := c.Read(buf)
		if err == nil {
			return ParseAnswer(string(buf[:n]))
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return Answer{Err: err}
		}
	}
	return Answer{Err: fmt.Errorf("no UDP answer from %s within %v", to, timeout)}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Load runs fn n times with the given concurrency, stopping early when ctx
// ends (every load loop is bounded in count and in time). Answers are in
// call order; calls not made have Err set to ctx's error.
func Load(ctx context.Context, n, concurrency int, fn func(ctx context.Context, i int) Answer) []Answer {
	out := make([]Answer, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = fn(ctx, i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			for ; i < n; i++ {
				out[i] = Answer{Err: fmt.Errorf("not sent: %w", ctx.Err())}
			}
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// Tally counts answers per backend; failures are counted under "".
func Tally(as []Answer) map[string]int {
	m := map[string]int{}
	for _, a := range as {
		if a.Err != nil {
			m[""]++
			continue
		}
		m[a.Backend]++
	}
	return m
}

// FormatTally prints a tally in a stable order: "b1=1500 b2=500 failed=0".
func FormatTally(m map[string]int) string {
	var keys []string
	for k := range m {
		if k != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	b.WriteString("failed=" + strconv.Itoa(m[""]))
	return b.String()
}

// WaitServing polls url from client until every backend in want has
// answered at least once, or any backend when want is empty (bounded by
// d): the data plane is programmed and those backends passed their checks.
func WaitServing(ctx context.Context, c *http.Client, url string, want []string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	seen := map[string]bool{}
	var last Answer
	for {
		last = Get(ctx, c, url)
		if last.Err == nil {
			seen[last.Backend] = true
		}
		missing := 0
		for _, w := range want {
			if !seen[w] {
				missing++
			}
		}
		if missing == 0 && len(seen) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not served by all of %v within %v: saw %v, last answer %+v", url, want, d, seen, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
