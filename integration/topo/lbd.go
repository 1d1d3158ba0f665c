package topo

import (
	"context"
	"fmt"
	"time"

	"github.com/dsrlb/dsrlb/internal/runfiles"
)

// StartLbd starts `lbd run --config <current config>` in the balancer's
// namespace (foreground, logs captured); Close stops it and detaches.
func (t *Topology) StartLbd() (*Proc, error) {
	cfg := t.ConfigPath()
	if cfg == "" {
		return nil, fmt.Errorf("start lbd: no configuration written yet (WriteConfig)")
	}
	return t.Start(t.Balancer, "lbd", t.Bins.Lbd, "run", "--config", cfg)
}

// Lbd runs `lbd <args> --config <current config>` in the balancer's
// namespace (status, reload, validate, detach) and returns its output.
func (t *Topology) Lbd(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return t.Balancer.NS.Run(ctx, t.Bins.Lbd, append(args, "--config", t.ConfigPath())...)
}

// StartLbdOn starts `lbd run` on balancer lb with its configuration file.
func (t *Topology) StartLbdOn(lb *Host) (*Proc, error) {
	cfg := t.ConfigPathFor(lb)
	if cfg == "" {
		return nil, fmt.Errorf("start lbd on %s: no configuration written yet (WriteConfig)", lb.Role)
	}
	return t.Start(lb, "lbd "+lb.Role, t.Bins.Lbd, "run", "--config", cfg)
}

// LbdOn runs `lbd <args> --config <lb's config>` on balancer lb.
func (t *Topology) LbdOn(ctx context.Context, lb *Host, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return lb.NS.Run(ctx, t.Bins.Lbd, append(args, "--config", t.ConfigPathFor(lb))...)
}

// LbdPIDFile is where `lbd run` on balancer lb writes its PID.
func (t *Topology) LbdPIDFile(lb *Host) string { return runfiles.For(t.PinPathFor(lb)).PID }
