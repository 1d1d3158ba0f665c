package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/dsrlb/dsrlb/hostprep/internal/files"
	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
	"github.com/dsrlb/dsrlb/hostprep/internal/reconcile"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
)

// session is the host a command works on.
type session struct {
	deps  *reconcile.Deps
	host  *reconcile.Host
	close func()
}

// open prepares deps and reads the live host; changes says whether the
// command will change the kernel (and so needs privileges).
func open(o *options, env *Env, changes bool) (*session, error) {
	s := &session{close: func() {}, deps: &reconcile.Deps{
		Files: files.FS{Root: o.root}, StatePath: o.state, Log: env.Log}}
	if !o.offline {
		if changes {
			if err := env.Privileged(); err != nil {
				return nil, err
			}
		}
		n, sc, closeFn, err := env.OpenLive()
		if err != nil {
			return nil, err
		}
		s.deps.Net, s.deps.Sysctls, s.close = n, sc, closeFn
	}
	var err error
	if s.host, err = reconcile.Gather(s.deps); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// makePlan loads the configuration (under --root) and plans for this host.
func makePlan(o *options, h *reconcile.Host) (*plan.Plan, error) {
	sel := plan.Selection{All: o.all, HostAddrs: h.HostAddrs()}
	for _, v := range o.vips {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("parse --vip %q: not an IP address (write it as 192.0.2.10 or 2001:db8::10)", v)
		}
		sel.VIPs = append(sel.VIPs, a)
	}
	if o.offline && !o.all && len(sel.VIPs) == 0 {
		return nil, errors.New("select VIPs: --offline reads no addresses, so it cannot tell which VIPs are this host's: name them with --vip ADDR or --all")
	}
	path := o.config
	if o.root != "" {
		path = filepath.Join(o.root, o.config)
	}
	cfg, err := cmdutil.LoadConfig(nil, path, nil)
	if err != nil {
		return nil, err
	}
	vips, err := plan.SelectVIPs(cfg, sel)
	if err != nil {
		return nil, err
	}
	return plan.Build(vips, h.Ifaces), nil
}

// fail makes err exit with code 1 (cobra's own errors exit 2).
func fail(err error) error {
	var ee *cmdutil.ExitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &cmdutil.ExitError{Code: 1, Err: err}
}

func runApply(o *options, env *Env) error {
	s, p, err := openWaiting(o, env)
	if err != nil {
		return fail(err)
	}
	defer s.close()
	if o.dryRun {
		printPlan(env.Stdout, p, s.deps.Live())
	}
	rep, err := reconcile.Apply(s.deps, p, s.host, o.dryRun)
	if rep != nil {
		printApply(env.Stdout, rep, p, o.dryRun, s.deps.Live(), err != nil)
	}
	return fail(err)
}

// openWaiting opens the host and plans; with --wait, while no server
// address is this host's yet, it reads the addresses again until one
// matches or the wait is over. At boot hostprep.service runs before a
// DHCP or late static address may exist, and is not retried otherwise.
func openWaiting(o *options, env *Env) (*session, *plan.Plan, error) {
	deadline := time.Now().Add(o.wait)
	for logged := false; ; {
		s, err := open(o, env, !o.dryRun)
		if err != nil {
			return nil, nil, err
		}
		p, err := makePlan(o, s.host)
		if err == nil {
			return s, p, nil
		}
		s.close()
		if !errors.Is(err, plan.ErrNoVIPs) || o.wait <= 0 {
			return nil, nil, err
		}
		if !time.Now().Before(deadline) {
			return nil, nil, fmt.Errorf("%w (waited %s for such an address)", err, o.wait)
		}
		if !logged {
			env.Log.Warn("no server address is this host's yet; waiting for one", "wait", o.wait)
			logged = true
		}
		time.Sleep(min(env.Poll, time.Until(deadline)))
	}
}

func runCheck(o *options, env *Env) error {
	s, err := open(o, env, false)
	if err != nil {
		return fail(err)
	}
	defer s.close()
	p, err := makePlan(o, s.host)
	if err != nil {
		return fail(err)
	}
	rep, err := reconcile.Check(s.deps, p, s.host)
	if err != nil {
		return fail(err)
	}
	if o.json {
		err = printCheckJSON(env.Stdout, rep, p)
	} else {
		printCheck(env.Stdout, rep, p, s.deps.Live())
	}
	if err == nil && len(rep.Changes) > 0 {
		return &cmdutil.ExitError{Code: 1, Err: errDrift, Plain: true}
	}
	return fail(err)
}

// errDrift ends check with exit code 1; the differences are already printed.
var errDrift = errors.New("hostprep: the host differs from the plan: run hostprep apply")

func runRemove(o *options, env *Env) error {
	s, err := open(o, env, !o.dryRun)
	if err != nil {
		return fail(err)
	}
	defer s.close()
	rep, err := reconcile.Remove(s.deps, s.host, o.dryRun)
	if rep != nil {
		printRemove(env.Stdout, rep, o.dryRun, filepath.Join(o.root, o.state))
	}
	return fail(err)
}
