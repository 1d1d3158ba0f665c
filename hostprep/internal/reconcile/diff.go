package reconcile

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"

	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
)

// diff returns the changes that make the host match p, in the order they
// must run: ARP sysctls before any VIP appears on lo (a VIP on lo with
// arp_ignore=0 is answered for on every NIC, stealing the balancer's
// traffic), then lo up, the VIPs, and the files last.
func (r *run) diff(p *plan.Plan, h *Host) ([]*Change, error) {
	var cs []*Change
	if r.d.Live() {
		sc, err := r.sysctlChanges(p.Sysctls)
		if err != nil {
			return nil, err
		}
		cs = append(cs, sc...)
		cs = append(cs, r.loopbackChange(h)...)
		cs = append(cs, r.addressChanges(p, h)...)
	}
	fc, err := r.fileChanges(p.Files)
	return append(cs, fc...), err
}

func (r *run) sysctlChanges(settings []plan.Setting) ([]*Change, error) {
	var cs []*Change
	for _, s := range settings {
		cur, err := r.d.Sysctls.Get(s.Key)
		if err != nil {
			return nil, err
		}
		if cur != s.Value {
			cs = append(cs, r.setSysctl(s.Key, cur, s.Value))
		}
	}
	return cs, nil
}

func (r *run) setSysctl(k sysctl.Key, cur, want string) *Change {
	return &Change{Kind: "sysctl", Item: k.String(), Have: cur, Want: want,
		Action: fmt.Sprintf("set %s = %s (now %s)", k, want, cur),
		Done:   fmt.Sprintf("set %s = %s (was %s)", k, want, cur),
		do: func() error {
			if err := r.d.Sysctls.Set(k, want); err != nil {
				return err
			}
			r.st.RecordSysctl(k.String(), cur)
			return nil
		},
		undo: func() error { return r.d.Sysctls.Set(k, cur) },
	}
}

func (r *run) loopbackChange(h *Host) []*Change {
	if h.LoUp {
		return nil
	}
	return []*Change{{Kind: "link", Item: netops.Loopback, Have: "down", Want: "up",
		Action: "bring lo up", Done: "brought lo up (it was down)",
		do: func() error {
			if err := r.d.Net.SetLoopbackUp(true); err != nil {
				return err
			}
			r.st.LoopbackUp = true
			return nil
		},
		undo: func() error { return r.d.Net.SetLoopbackUp(false) },
	}}
}

func (r *run) addressChanges(p *plan.Plan, h *Host) []*Change {
	var cs []*Change
	for _, v := range p.VIPs {
		want := netops.Addr{Link: netops.Loopback, Prefix: v.Prefix(), Label: v.Label()}
		i := slices.IndexFunc(h.Addrs, func(a netops.Addr) bool {
			return a.Link == netops.Loopback && a.Prefix.Addr() == v.Addr
		})
		switch {
		case i < 0:
			cs = append(cs, r.addAddr(want))
		case h.Addrs[i] != want:
			cs = append(cs, r.replaceAddr(h.Addrs[i], want))
		}
	}
	return append(cs, r.staleAddrs(p, h)...)
}

func (r *run) addAddr(a netops.Addr) *Change {
	return &Change{Kind: "address", Item: a.Prefix.String(), Have: "absent", Want: describe(a),
		Action: "add " + describe(a), Done: "added " + describe(a),
		do: func() error {
			if err := r.d.Net.AddAddr(a); err != nil {
				return err
			}
			r.st.AddAddress(a.Prefix)
			return nil
		},
		undo: func() error { return r.d.Net.DelAddr(a) },
	}
}

// replaceAddr fixes the prefix length or the label of a VIP already on lo.
// The kernel cannot relabel an address (AddrReplace keeps the old label),
// so this is a delete and an add.
func (r *run) replaceAddr(old, a netops.Addr) *Change {
	return &Change{Kind: "address", Item: a.Prefix.String(), Have: describe(old), Want: describe(a),
		Action: fmt.Sprintf("replace %s with %s", describe(old), describe(a)),
		Done:   fmt.Sprintf("replaced %s with %s", describe(old), describe(a)),
		do:     func() error { return swapAddr(r.d.Net, old, a) },
		undo:   func() error { return swapAddr(r.d.Net, a, old) },
	}
}

func swapAddr(n Net, from, to netops.Addr) error {
	if err := n.DelAddr(from); err != nil {
		return err
	}
	if err := n.AddAddr(to); err != nil {
		_ = n.AddAddr(from) // best effort: never leave the VIP missing
		return err
	}
	return nil
}

// staleAddrs deletes VIPs hostprep added earlier that the plan no longer
// holds (a service moved away from this host).
func (r *run) staleAddrs(p *plan.Plan, h *Host) []*Change {
	var cs []*Change
	for _, pfx := range r.st.Addresses {
		if slices.ContainsFunc(p.VIPs, func(v plan.VIP) bool { return v.Prefix() == pfx }) {
			continue
		}
		if i := indexOnLo(h.Addrs, pfx); i >= 0 {
			cs = append(cs, r.delAddr(h.Addrs[i], "no service of this host has it any more"))
		}
	}
	return cs
}

func (r *run) delAddr(a netops.Addr, why string) *Change {
	return &Change{Kind: "address", Item: a.Prefix.String(), Have: describe(a), Want: "absent (" + why + ")",
		Action: "delete " + describe(a), Done: "deleted " + describe(a),
		do: func() error {
			if err := r.d.Net.DelAddr(a); err != nil {
				return err
			}
			r.st.DropAddress(a.Prefix)
			return nil
		},
		undo: func() error { return r.d.Net.AddAddr(a) },
	}
}

func indexOnLo(addrs []netops.Addr, p netip.Prefix) int {
	return slices.IndexFunc(addrs, func(a netops.Addr) bool { return a.Link == netops.Loopback && a.Prefix == p })
}

func describe(a netops.Addr) string {
	s := a.Prefix.String() + " on " + a.Link
	if a.Label != "" {
		s += " (label " + a.Label + ")"
	}
	return s
}

func (r *run) fileChanges(fs []plan.File) ([]*Change, error) {
	var cs []*Change
	for _, f := range fs {
		cur, exists, err := r.d.Files.Read(f.Path)
		if err != nil {
			return nil, err
		}
		if !exists || !bytes.Equal(cur, f.Content) {
			cs = append(cs, r.writeFile(f, cur, exists))
		}
	}
	return cs, nil
}

func (r *run) writeFile(f plan.File, cur []byte, exists bool) *Change {
	c := &Change{Kind: "file", Item: f.Path, Have: "absent", Want: "written by hostprep",
		Action: "write " + f.Path, Done: "wrote " + f.Path,
		do: func() error {
			if err := r.d.Files.Write(f.Path, f.Content); err != nil {
				return err
			}
			r.st.RecordFile(f.Path, cur, exists)
			return nil
		},
		undo: func() error { return restoreFile(r.d.Files, f.Path, cur, exists) },
	}
	if exists {
		c.Have, c.Diff = "different content", lineDiff(cur, f.Content)
	}
	return c
}

func restoreFile(fs Files, path string, content []byte, exists bool) error {
	if !exists {
		return fs.Remove(path)
	}
	return fs.Write(path, content)
}
