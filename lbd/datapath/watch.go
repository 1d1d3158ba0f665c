package datapath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// ErrNotAttached: the program is no longer attached as Attach left it (a
// tcx link detached, e.g. `bpftool link detach`, or updated to another
// program; a cls_bpf filter deleted or replaced).
var ErrNotAttached = errors.New("data plane program not attached")

// CheckAttached tells whether the program Attach attached still runs on
// the interface; nil also when this Datapath attached nothing. A daemon
// calls it periodically and calls Attach again to repair.
func (d *Datapath) CheckAttached() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.link == nil && d.clsact == 0 {
		return nil
	}
	ours, err := programID(d.objs.DsrlbIngress)
	if err != nil {
		return err
	}
	if d.link != nil {
		info, err := d.link.Info()
		if err != nil {
			return fmt.Errorf("read tcx link: %w", err)
		}
		return checkTCX(info, ours, d.opts.Interface)
	}
	return checkClsact(d.clsact, ours, d.opts.Interface)
}

func checkTCX(info *link.Info, ours ebpf.ProgramID, ifname string) error {
	if tcx := info.TCX(); tcx == nil || tcx.Ifindex == 0 {
		return fmt.Errorf("%w: the tcx link on %s was detached", ErrNotAttached, ifname)
	}
	if ours != 0 && info.Program != ours {
		return fmt.Errorf("%w: the tcx link on %s runs program %d, not lbd's %d (replaced)", ErrNotAttached, ifname, info.Program, ours)
	}
	return nil
}

func checkClsact(ifindex int, ours ebpf.ProgramID, ifname string) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return fmt.Errorf("%w: interface %s is gone", ErrNotAttached, ifname)
	}
	filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		return fmt.Errorf("%w: no clsact qdisc on %s", ErrNotAttached, ifname)
	}
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if !ok || bf.Name != clsactFilterName || bf.Priority != clsactPrio {
			continue
		}
		if ours != 0 && ebpf.ProgramID(bf.Id) != ours {
			return fmt.Errorf("%w: the cls_bpf filter on %s runs program %d, not lbd's %d (replaced)", ErrNotAttached, ifname, bf.Id, ours)
		}
		return nil
	}
	return fmt.Errorf("%w: the cls_bpf filter on %s was deleted", ErrNotAttached, ifname)
}

func programID(p *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := p.Info()
	if err != nil {
		return 0, fmt.Errorf("read program info: %w", err)
	}
	id, _ := info.ID()
	return id, nil
}

// Attachment describes how the pinned data plane is attached to ifname,
// read-only: "" and nil when its pinned tcx link (or its clsact filter)
// runs a dsrlb program there, an error saying what is wrong otherwise.
func (r *Reader) Attachment(ifname string) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("%w: interface %s not found", ErrNotAttached, ifname)
	}
	// Links take no BPF_F_RDONLY; only Info is read through this one.
	l, err := link.LoadPinnedLink(filepath.Join(r.d.opts.PinPath, pinLink), nil)
	if errors.Is(err, os.ErrNotExist) { // no tcx link pinned: clsact mode, or detached
		return checkClsact(ifi.Index, 0, ifname)
	}
	if err != nil {
		return fmt.Errorf("open pinned tcx link: %w", err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("read tcx link: %w", err)
	}
	if err := checkTCX(info, 0, ifname); err != nil {
		return err
	}
	if tcx := info.TCX(); int(tcx.Ifindex) != ifi.Index {
		return fmt.Errorf("%w: the tcx link is on ifindex %d, not on %s", ErrNotAttached, tcx.Ifindex, ifname)
	}
	if !isDsrlbProgram(info.Program) {
		return fmt.Errorf("%w: the tcx link on %s runs program %d, not dsrlb's (replaced)", ErrNotAttached, ifname, info.Program)
	}
	return nil
}

// Reattach attaches the program again after CheckAttached failed: this
// process's handle on the broken link is dropped and Attach runs as at
// start (a detached pinned tcx link is replaced, a replaced program
// swapped back, a deleted cls_bpf filter added again).
func (d *Datapath) Reattach() error {
	d.mu.Lock()
	if d.link != nil {
		d.link.Close() // pinned: closing our handle detaches nothing
		d.link = nil
	}
	d.clsact = 0
	d.mu.Unlock()
	return d.Attach()
}

// Attached reports whether the data plane Open found is attached to
// Options.Interface now, before this Datapath attaches anything: a pinned
// tcx link on that interface, or lbd's cls_bpf filter there. A start that
// attaches a data plane found detached, then fails, detaches it again. An
// error means it could not tell (callers then assume attached).
func (d *Datapath) Attached() (bool, error) {
	ifindex, err := d.ifindex()
	if err != nil {
		return false, err
	}
	if path := d.pin(pinLink); path != "" {
		l, err := link.LoadPinnedLink(path, nil)
		switch {
		case err == nil:
			info, err := l.Info()
			l.Close()
			if err != nil {
				return false, fmt.Errorf("read pinned tcx link: %w", err)
			}
			if tcx := info.TCX(); tcx != nil && int(tcx.Ifindex) == ifindex {
				return true, nil
			}
		case !errors.Is(err, os.ErrNotExist):
			return false, fmt.Errorf("load pinned link: %w", err)
		}
	}
	return clsactAttached(ifindex)
}

// clsactAttached reports whether lbd's cls_bpf filter is on ifindex's
// ingress; no clsact qdisc there is no filter.
func clsactAttached(ifindex int) (bool, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return false, fmt.Errorf("find interface %d: %w", ifindex, err)
	}
	qdiscs, err := netlink.QdiscList(l)
	if err != nil {
		return false, fmt.Errorf("list qdiscs: %w", err)
	}
	if !slices.ContainsFunc(qdiscs, func(q netlink.Qdisc) bool { return q.Type() == "clsact" }) {
		return false, nil
	}
	filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		return false, fmt.Errorf("list ingress filters: %w", err)
	}
	return slices.ContainsFunc(filters, func(f netlink.Filter) bool {
		bf, ok := f.(*netlink.BpfFilter)
		return ok && bf.Name == clsactFilterName && bf.Priority == clsactPrio
	}), nil
}
