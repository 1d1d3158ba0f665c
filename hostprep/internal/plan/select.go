package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/dsrlb/dsrlb/shared/config"
)

// ErrNoVIPs means no service lists this host as a server.
var ErrNoVIPs = errors.New("no VIP is this host's")

// Selection says which VIPs are this host's.
type Selection struct {
	VIPs      []netip.Addr // --vip: exactly these (each must be a VIP of the file)
	All       bool         // --all: every VIP of the file
	HostAddrs []netip.Addr // otherwise: VIPs of services whose servers include one of these
}

// SelectVIPs returns the VIPs this host must hold, sorted (IPv4 first).
func SelectVIPs(cfg *config.Config, sel Selection) ([]VIP, error) {
	all := ConfigVIPs(cfg)
	var out []VIP
	var err error
	switch {
	case len(sel.VIPs) > 0 && sel.All:
		return nil, errors.New("select VIPs: --vip and --all exclude each other: give one")
	case sel.All:
		out = all
	case len(sel.VIPs) > 0:
		out, err = pick(cfg.File, all, sel.VIPs)
	default:
		out, err = mine(cfg, all, sel.HostAddrs)
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b VIP) int { return a.Addr.Compare(b.Addr) })
	return out, nil
}

func pick(file string, all []VIP, want []netip.Addr) ([]VIP, error) {
	var out []VIP
	for _, w := range want {
		i := slices.IndexFunc(all, func(v VIP) bool { return v.Addr == w.Unmap() })
		if i < 0 {
			return nil, fmt.Errorf("select VIPs: --vip %s is not the vip of any service in %s: add the service to the file or fix the address", w, file)
		}
		if !slices.ContainsFunc(out, func(v VIP) bool { return v.Addr == all[i].Addr }) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// mine keeps the VIPs of the services that list one of addrs as a server.
func mine(cfg *config.Config, all []VIP, addrs []netip.Addr) ([]VIP, error) {
	byVIP := map[netip.Addr][]string{}
	for _, s := range cfg.Services {
		for _, srv := range s.Servers {
			if slices.Contains(addrs, srv.Address) {
				byVIP[s.VIP] = append(byVIP[s.VIP], s.Name)
				break
			}
		}
	}
	var out []VIP
	for _, v := range all {
		if names := byVIP[v.Addr]; names != nil {
			out = append(out, VIP{Addr: v.Addr, Services: names})
		}
	}
	if len(out) == 0 {
		return nil, noVIPs(cfg.File, addrs)
	}
	return out, nil
}

func noVIPs(file string, addrs []netip.Addr) error {
	list := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if !a.IsLoopback() && !a.IsLinkLocalUnicast() {
			list = append(list, a.String())
		}
	}
	have := "none but loopback and link-local"
	if len(list) > 0 {
		have = strings.Join(list, ", ")
	}
	return fmt.Errorf("%w: no service in %s lists a server with one of this host's addresses (%s): "+
		"add this host to a service's servers, or name the VIPs with --vip ADDR (repeatable) or --all", ErrNoVIPs, file, have)
}
