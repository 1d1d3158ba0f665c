package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/crypto/bcrypt"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

// inNS runs f on a locked thread in ns (nettest.Do).
func inNS(ns netns.NsHandle, f func() error) error { return nettest.Do(ns, f) }

// writeWebConfig writes a certificate for 127.0.0.1, signed by a test CA
// (the pool returned holds it), and an
// exporter-toolkit web configuration with one basic auth user.
func writeWebConfig(t *testing.T, dir, user, password string) (path string, pool *x509.CertPool) {
	t.Helper()
	pki := nettest.NewPKI(t, "localhost", net.IPv4(127, 0, 0, 1))
	hash, _ := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	files := map[string]string{
		"cert.pem": string(pki.LeafPEM()),
		"key.pem":  string(pki.KeyPEM(t)),
		"web-config.yml": "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n" +
			"basic_auth_users:\n  " + user + ": " + string(hash) + "\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := x509.ParseCertificate(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return filepath.Join(dir, "web-config.yml"), pool
}

const webConfigYAML = `balancer:
  interface: eth0
  metrics: {listen: "127.0.0.1:9469", web_config: WEBCONFIG}
services:
  - name: web
    vip: 192.0.2.10
    ports: [80]
    check: {type: none}
    servers: [{name: a, address: 192.0.2.11}]
`

// TestMetricsTLSAndBasicAuth: with balancer.metrics.web_config the
// endpoint speaks only TLS and answers only the configured user; a
// broken file stops the start with its name. The server runs in a
// namespace of its own: no traffic on the host.
func TestMetricsTLSAndBasicAuth(t *testing.T) {
	nettest.Require(t)
	ns := nettest.New(t)
	dir := t.TempDir()
	path, pool := writeWebConfig(t, dir, "prometheus", "s3cret")
	d := newTestDaemon(t, strings.Replace(webConfigYAML, "WEBCONFIG", path, 1))
	d.log = slog.New(slog.DiscardHandler)
	if err := inNS(ns.Handle, func() error { return startMetricsAsRunDoes(d) }); err != nil {
		t.Fatalf("start metrics: %v", err)
	}
	defer d.metrics.close()

	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(ns.Handle, func() (err error) {
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(url, user, pass string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// A path without a collector behind it: what is checked is the TLS and
	// authentication layer in front of every path, /metrics included.
	const url = "https://127.0.0.1:9469/no-such-page"
	if code, err := get(url, "", ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d %v, want 401", code, err)
	}
	if code, err := get(url, "prometheus", "wrong"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d %v, want 401", code, err)
	}
	if code, err := get(url, "prometheus", "s3cret"); err != nil || code != http.StatusNotFound {
		t.Errorf("right credentials: %d %v, want 404 (authenticated, no such page)", code, err)
	}
	// The status page and its data sit behind the same layer.
	for _, page := range []string{"https://127.0.0.1:9469/", "https://127.0.0.1:9469/status.json"} {
		if code, err := get(page, "", ""); err != nil || code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d %v, want 401", page, code, err)
		}
		if code, err := get(page, "prometheus", "s3cret"); err != nil || code != http.StatusOK {
			t.Errorf("%s with credentials: %d %v, want 200", page, code, err)
		}
	}
	if code, err := get("http://127.0.0.1:9469/no-such-page", "prometheus", "s3cret"); err == nil && code != http.StatusBadRequest {
		t.Errorf("plain HTTP: %d, want refused (400 or an error)", code)
	}

	// A missing certificate is reported at start, naming the file.
	os.Remove(filepath.Join(dir, "cert.pem"))
	d2 := newTestDaemon(t, strings.Replace(webConfigYAML, "WEBCONFIG", path, 1))
	d2.log = d.log
	err := inNS(ns.Handle, func() error { return startMetricsAsRunDoes(d2) })
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "balancer.metrics.web_config") {
		t.Errorf("start with a missing certificate: %v, want an error naming %s", err, path)
	}
	if d2.metrics != nil {
		d2.metrics.close()
	}
}

// startMetricsAsRunDoes follows start's order: the web configuration is
// read and the address bound in preflight, then the server starts.
func startMetricsAsRunDoes(d *Daemon) error {
	if err := checkWebConfig(d.cfg.Balancer.MetricsWebConfig); err != nil {
		return err
	}
	ln, err := listenMetrics(d.cfg.Balancer.MetricsListen)
	if err != nil {
		return err
	}
	d.metricsLn = ln
	return d.startMetrics(context.Background())
}

// TestRestartOnlyWebConfig: the endpoint's listener is set up once, so
// turning TLS on or off is a restart, said by the reload.
func TestRestartOnlyWebConfig(t *testing.T) {
	cur := mustParse(t, twoServers)
	next := mustParse(t, strings.Replace(twoServers, "interface: eth0", "interface: eth0, metrics: {web_config: /etc/dsrlb/web-config.yml}", 1))
	err := restartOnly(cur, next)
	if err == nil || !strings.Contains(err.Error(), "balancer.metrics.web_config: changed; this takes a restart") {
		t.Errorf("restartOnly = %v", err)
	}
}
