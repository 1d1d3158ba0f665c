package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// tlsDialer returns the DialTLSContext of an https check: the connection
// comes from dialerFor(t), like every TCP-based check's (so https takes
// whatever path tcp and http take), and the TLS handshake runs over it.
//
// Verification is on unless check.insecure_skip_verify: against ca_file's
// certificates, else the system's roots, for the name check.sni (default
// check.host), else for the checked IP address. The CA file is read on
// every check and parsed again when it changed, so a renewed CA is used
// without a reload.
func tlsDialer(t Target) dialFunc {
	base := tlsConfig(t)
	dial := dialerFor(t)
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		cfg := base
		if t.Check.CAFile != "" && !t.Check.InsecureSkipVerify {
			pool, err := cas.pool(t.Check.CAFile)
			if err != nil {
				return nil, fmt.Errorf("https check of %s cannot verify certificates: %w; fix check.ca_file", t.Addr, err)
			}
			cfg = base.Clone()
			cfg.RootCAs = pool
		}
		// http.Transport dials with a context that has no deadline and is
		// never cancelled (a dial may outlive its request): bound the dial
		// and the handshake by the check's timeout, or a backend that
		// accepts and never answers keeps a goroutine (and, through the
		// DSR path, a source port) per check forever.
		if _, ok := ctx.Deadline(); !ok && t.Check.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, t.Check.Timeout)
			defer cancel()
		}
		raw, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = raw.SetDeadline(dl)
		}
		c := tls.Client(raw, cfg)
		if err := c.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, newTLSError(t, err)
		}
		_ = raw.SetDeadline(time.Time{}) // the request's context bounds the rest
		return c, nil
	}
}

func tlsConfig(t Target) *tls.Config {
	c := t.Check
	cfg := &tls.Config{
		// ServerName is sent as SNI unless it is an IP address (RFC 6066),
		// and is the name the certificate must carry.
		ServerName:         c.SNI,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice, documented
		// A backend's TLS 1.0/1.1 is a finding, not a check failure to hide.
		MinVersion: tls.VersionTLS12,
	}
	if cfg.ServerName == "" {
		cfg.ServerName = t.Addr.Addr().String()
	}
	return cfg
}

// caCache holds the CA files of https checks. Every check reads its file
// (a few KiB from the page cache, next to a TLS handshake it is nothing)
// and parses it only when its bytes changed: file times are too coarse to
// tell two quick rewrites apart.
type caCache struct {
	mu    sync.Mutex
	files map[string]caFile
}

type caFile struct {
	pem  []byte
	pool *x509.CertPool
}

var cas = &caCache{files: map[string]caFile{}}

func (c *caCache) pool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.files[path]; ok && bytes.Equal(f.pem, pem) {
		return f.pool, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		delete(c.files, path)
		return nil, fmt.Errorf("CA file %s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path)
	}
	c.files[path] = caFile{pem: pem, pool: pool}
	return pool, nil
}

// tlsError is a failed handshake, said the way an operator can act on.
type tlsError struct {
	msg string
	err error
}

func (e *tlsError) Error() string { return e.msg }
func (e *tlsError) Unwrap() error { return e.err }

func newTLSError(t Target, err error) error {
	name := t.Check.SNI
	if name == "" {
		name = t.Addr.Addr().String()
	}
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknown):
		where := "the system's roots"
		if t.Check.CAFile != "" {
			where = t.Check.CAFile
		}
		return &tlsError{fmt.Sprintf("TLS certificate of %s is not signed by a CA in %s (%v): give its CA in check.ca_file, or set check.insecure_skip_verify: true", t.Addr, where, err), err}
	case errors.As(err, &hostname):
		return &tlsError{fmt.Sprintf("TLS certificate of %s is not valid for %s (%v): set check.sni (or check.host) to a name it carries", t.Addr, name, err), err}
	case errors.As(err, &invalid):
		return &tlsError{fmt.Sprintf("TLS certificate of %s is invalid (%v): is it expired or not yet valid?", t.Addr, err), err}
	case errors.As(err, &verify):
		return &tlsError{fmt.Sprintf("TLS certificate of %s not accepted: %v", t.Addr, err), err}
	}
	return &tlsError{fmt.Sprintf("TLS handshake with %s (server name %s) failed: %v: does the port speak TLS?", t.Addr, name, err), err}
}
