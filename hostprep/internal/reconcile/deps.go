// Package reconcile compares a plan with the host and changes the host to
// match it (apply), reports the differences (check) or undoes what hostprep
// changed (remove). Every change carries its undo: a run that fails midway
// rolls back what it changed, newest first.
package reconcile

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
	"github.com/dsrlb/dsrlb/hostprep/internal/state"
	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
)

// Net is the live address state (netops.Netlink in production).
type Net interface {
	Addrs() ([]netops.Addr, error)
	LoopbackUp() (bool, error)
	SetLoopbackUp(up bool) error
	AddAddr(netops.Addr) error
	DelAddr(netops.Addr) error
}

// Sysctls is the live sysctl state (sysctl.Kernel in production).
type Sysctls interface {
	Get(sysctl.Key) (string, error)
	Set(sysctl.Key, string) error
	Interfaces() ([]string, error)
}

// Files is the file system under --root (files.FS in production).
type Files interface {
	Read(path string) ([]byte, bool, error)
	Write(path string, data []byte) error
	Remove(path string) error
}

// Deps is what a run works on. Net and Sysctls are nil when only files
// are handled (--offline).
type Deps struct {
	Net       Net
	Sysctls   Sysctls
	Files     Files
	StatePath string
	Log       *slog.Logger
}

// Live reports whether the run touches the kernel.
func (d *Deps) Live() bool { return d.Net != nil && d.Sysctls != nil }

// Host is what a run learns about the live host before planning.
type Host struct {
	Addrs  []netops.Addr
	LoUp   bool
	Ifaces []plan.IfaceARP
}

// HostAddrs is every address of the host, for finding its services.
func (h *Host) HostAddrs() []netip.Addr {
	out := make([]netip.Addr, len(h.Addrs))
	for i, a := range h.Addrs {
		out[i] = a.Prefix.Addr()
	}
	return out
}

// Gather reads the live facts planning needs; offline it returns an empty Host.
func Gather(d *Deps) (*Host, error) {
	h := &Host{}
	if !d.Live() {
		return h, nil
	}
	var err error
	if h.Addrs, err = d.Net.Addrs(); err != nil {
		return nil, err
	}
	if h.LoUp, err = d.Net.LoopbackUp(); err != nil {
		return nil, err
	}
	h.Ifaces, err = ifaceARP(d.Sysctls)
	return h, err
}

func ifaceARP(s Sysctls) ([]plan.IfaceARP, error) {
	names, err := s.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]plan.IfaceARP, 0, len(names))
	for _, n := range names {
		ig, err := s.Get(sysctl.Conf(n, "arp_ignore"))
		if err != nil {
			return nil, err
		}
		an, err := s.Get(sysctl.Conf(n, "arp_announce"))
		if err != nil {
			return nil, err
		}
		out = append(out, plan.IfaceARP{Name: n, Ignore: ig, Announce: an})
	}
	return out, nil
}

// loadState reads the state file; a missing file is an empty state.
func loadState(d *Deps) (st *state.State, raw []byte, err error) {
	raw, _, err = d.Files.Read(d.StatePath)
	if err != nil {
		return nil, nil, fmt.Errorf("load state: %w", err)
	}
	st, err = state.Decode(d.StatePath, raw)
	return st, raw, err
}
