// Package plan computes what a backend must look like for Direct Server
// Return: which VIPs go on lo, which sysctls hold which values and which
// files carry both across reboots. It reads nothing and changes nothing:
// the caller gives it the configuration and the facts it needs.
package plan

import (
	"net/netip"

	"github.com/dsrlb/dsrlb/hostprep/internal/render"
	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
	"github.com/dsrlb/dsrlb/shared/config"
)

// Files hostprep owns (under --root when given).
const (
	// SysctlFile sorts after Debian's 99-sysctl.conf (/etc/sysctl.conf):
	// sysctl.d files are read in name order across directories and the
	// last setting of a key wins, so an older arp_ignore=0 there cannot
	// silently undo DSR at the next boot.
	SysctlFile = "/etc/sysctl.d/99-zz-dsrlb-arp.conf"
	// NetworkdFile sorts before the usual 10-*/50-*/99-* files: networkd
	// applies only the first .network file matching a link.
	NetworkdFile = "/etc/systemd/network/05-dsrlb-lo.network"
)

// Label is the label of every IPv4 VIP. One label for all VIPs, rather
// than lo:1, lo:2… by position, so adding or removing a VIP never
// relabels the others (a label change is a delete and an add, a moment
// without the VIP), and `ip addr show label lo:1` lists exactly them.
const Label = "lo:1"

// Plan is the wanted state of the host.
type Plan struct {
	VIPs    []VIP
	Sysctls []Setting
	Files   []File
}

// VIP is one address to hold on lo.
type VIP struct {
	Addr     netip.Addr
	Services []string // the services that made it this host's
}

// Prefix is the VIP as a host route: /32 or /128.
func (v VIP) Prefix() netip.Prefix { return netip.PrefixFrom(v.Addr, v.Addr.BitLen()) }

// Label is the address label: Label for IPv4, none for IPv6.
func (v VIP) Label() string {
	if v.Addr.Is4() {
		return Label
	}
	return ""
}

// Setting is one sysctl value and why hostprep wants it.
type Setting struct {
	Key     sysctl.Key
	Value   string
	Reason  string
	Persist bool // written to the sysctl.d file (per-interface fixes are not)
}

// File is one file hostprep writes.
type File struct {
	Path    string
	Content []byte
}

// Build returns the plan for vips and the current per-interface ARP values
// (nil when unknown, as when only files are written).
func Build(vips []VIP, ifaces []IfaceARP) *Plan {
	p := &Plan{VIPs: vips, Sysctls: Settings(ifaces)}
	p.Files = []File{
		{Path: SysctlFile, Content: render.SysctlD(persisted(p.Sysctls))},
		{Path: NetworkdFile, Content: render.Networkd(addresses(vips))},
	}
	return p
}

func persisted(settings []Setting) []render.Sysctl {
	var out []render.Sysctl
	for _, s := range settings {
		if s.Persist {
			out = append(out, render.Sysctl{Key: s.Key.String(), Value: s.Value, Reason: s.Reason})
		}
	}
	return out
}

func addresses(vips []VIP) []render.Address {
	out := make([]render.Address, len(vips))
	for i, v := range vips {
		out[i] = render.Address{Prefix: v.Prefix(), Label: v.Label()}
	}
	return out
}

// ConfigVIPs is every VIP of cfg with the services naming it.
func ConfigVIPs(cfg *config.Config) []VIP {
	var out []VIP
	idx := map[netip.Addr]int{}
	for _, s := range cfg.Services {
		i, ok := idx[s.VIP]
		if !ok {
			i = len(out)
			idx[s.VIP] = i
			out = append(out, VIP{Addr: s.VIP})
		}
		out[i].Services = append(out[i].Services, s.Name)
	}
	return out
}
