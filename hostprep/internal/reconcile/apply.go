package reconcile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
)

// ErrVIPElsewhere means a VIP is on a NIC of this host, not only on lo.
var ErrVIPElsewhere = errors.New("VIP on a non-loopback interface")

// Apply makes the host match p (h is what Gather found). With dryRun it
// only returns the changes it would make.
func Apply(d *Deps, p *plan.Plan, h *Host, dryRun bool) (*Report, error) {
	r, err := newRun(d)
	if err != nil {
		return nil, err
	}
	if cs := conflicts(p, h); len(cs) > 0 {
		return nil, conflictError(cs)
	}
	if r.changes, err = r.diff(p, h); err != nil {
		return nil, err
	}
	if dryRun {
		return &Report{Changes: r.changes}, nil
	}
	return r.execute()
}

// Check returns the differences between the host and p, as changes not made.
func Check(d *Deps, p *plan.Plan, h *Host) (*Report, error) {
	r, err := newRun(d)
	if err != nil {
		return nil, err
	}
	cs, err := r.diff(p, h)
	if err != nil {
		return nil, err
	}
	return &Report{Changes: append(conflicts(p, h), cs...)}, nil
}

// conflicts finds VIPs held by a NIC of this host: that NIC would answer
// ARP for the VIP, whatever the sysctls, and take the balancer's traffic.
func conflicts(p *plan.Plan, h *Host) []*Change {
	var cs []*Change
	for _, v := range p.VIPs {
		for _, a := range h.Addrs {
			if a.Prefix.Addr() == v.Addr && a.Link != netops.Loopback {
				cs = append(cs, &Change{Kind: "conflict", Item: v.Addr.String(),
					Have: "on " + a.Link + " as " + a.Prefix.String(), Want: "only on lo",
					Action: fmt.Sprintf("ip addr del %s dev %s", a.Prefix, a.Link)})
			}
		}
	}
	return cs
}

func conflictError(cs []*Change) error {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "\n  %s is %s: delete it there (%s)", c.Item, c.Have, c.Action)
	}
	return fmt.Errorf("%w:%s\na backend holding a VIP on a NIC answers ARP for it and takes the balancer's traffic; "+
		"if this host is the balancer, do not run hostprep on it", ErrVIPElsewhere, b.String())
}
