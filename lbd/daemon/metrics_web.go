package daemon

import (
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/dsrlb/dsrlb/shared/config"
)

// CheckWebConfig is checkWebConfig for `lbd validate`: the unit's
// ExecStartPre then refuses a broken web configuration before lbd starts.
func CheckWebConfig(cfg *config.Config) error { return checkWebConfig(cfg.Balancer.MetricsWebConfig) }

// checkWebConfig reads the metrics web configuration (TLS certificates,
// basic auth users) once at start, so a broken file stops lbd with its
// name instead of failing every scrape later. "" means plain HTTP.
func checkWebConfig(path string) error {
	if path == "" {
		return nil
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("read metrics web configuration %s: %w (fix the file, or remove balancer.metrics.web_config for plain HTTP)", path, err)
	}
	return nil
}

// serveMetrics serves srv on ln, with TLS and basic authentication when
// balancer.metrics.web_config names an exporter-toolkit web configuration
// (the file is read again on each connection: renewed certificates and
// changed passwords need no reload).
func (d *Daemon) serveMetrics(srv *http.Server, ln net.Listener) error {
	path := d.cfg.Balancer.MetricsWebConfig
	if path == "" {
		return srv.Serve(ln)
	}
	return web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &path}, d.log.With("component", "metrics"))
}
