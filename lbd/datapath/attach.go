package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Pin names under Options.PinPath besides the maps (pinned by map name).
const (
	pinLink    = "link"    // the tcx link
	pinProgram = "program" // the program, when attached with clsact
)

// clsactFilterName names our cls_bpf filter, to find it again.
const clsactFilterName = "dsrlb"

// clsactPrio is our filter's priority under clsact ingress.
const clsactPrio = 1

// Attach attaches the program to Options.Interface at tc ingress: with tcx
// when the kernel has it (>= 6.6), otherwise with clsact + cls_bpf in
// direct-action mode. A link pinned by a previous lbd is updated in place
// to this program, so forwarding never stops. After a replacing Open the
// fresh maps move over the pinned ones once the program is attached
// (swap.go); a failed attach leaves them under next/ for Unpin.
func (d *Datapath) Attach() error {
	if err := d.attach(); err != nil {
		d.abortSwap()
		return err
	}
	d.finishSwap()
	return nil
}

func (d *Datapath) attach() error {
	ifindex, err := d.ifindex()
	if err != nil {
		return err
	}
	if !d.opts.ForceClsact {
		err := d.attachTCX(ifindex)
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		d.log.Warn("kernel lacks tcx, attaching with clsact", "interface", d.opts.Interface)
	}
	return d.attachClsact(ifindex)
}

func (d *Datapath) ifindex() (int, error) {
	if d.opts.Interface == "" {
		return 0, fmt.Errorf("attach program: %w", ErrNoInterface)
	}
	l, err := netlink.LinkByName(d.opts.Interface)
	if err != nil {
		return 0, fmt.Errorf("find interface %s: %w", d.opts.Interface, err)
	}
	return l.Attrs().Index, nil
}

func (d *Datapath) pin(name string) string {
	if d.opts.PinPath == "" {
		return ""
	}
	return filepath.Join(d.opts.PinPath, name)
}

func (d *Datapath) attachTCX(ifindex int) error {
	if path := d.pin(pinLink); path != "" {
		updated, err := d.updatePinnedLink(path, ifindex)
		if updated || err != nil {
			return err
		}
	}
	if err := d.beginSwap(); err != nil {
		return err
	}
	l, err := link.AttachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   d.objs.DsrlbIngress,
		Attach:    ebpf.AttachTCXIngress,
	})
	if err != nil {
		return fmt.Errorf("attach tcx to %s: %w", d.opts.Interface, err)
	}
	if path := d.pin(pinLink); path != "" {
		if err := l.Pin(path); err != nil {
			l.Close()
			return fmt.Errorf("pin link: %w", err)
		}
	}
	d.link = l
	d.log.Info("attached with tcx", "interface", d.opts.Interface)
	d.detachStrayTCX(ifindex, l)
	// After a kernel upgrade, a filter left by a clsact-era lbd would run
	// an old program after ours: remove it. Ours forwards from here, so a
	// failure is logged, not returned: a start whose Attach fails undoes
	// as one whose program never forwarded.
	err = d.fault("attach cleanup")
	if err == nil {
		err = d.detachClsact()
	}
	if err != nil {
		d.log.Warn("attached, but a cls_bpf filter of an earlier lbd may remain and see the packets ours lets continue; "+
			"remove it: tc filter del dev "+d.opts.Interface+" ingress pref "+fmt.Sprint(clsactPrio), "err", err)
		return nil
	}
	// The clsact-era program's pin would hold that program, and with it
	// maps a replacing start no longer pins (conntrack: hundreds of MiB),
	// until lbd detach.
	if path := d.pin(pinProgram); path != "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("attached, but the pin of an earlier lbd's clsact program stays and holds its maps; remove it", "pin", path, "err", err)
		}
	}
	return nil
}

// updatePinnedLink swaps this program into a pinned tcx link on the same
// interface. A link on another interface is removed (reports false).
func (d *Datapath) updatePinnedLink(path string, ifindex int) (bool, error) {
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load pinned link: %w", err)
	}
	info, err := l.Info()
	if err == nil && info.TCX() != nil && int(info.TCX().Ifindex) == ifindex {
		if err := d.beginSwap(); err != nil {
			l.Close()
			return false, err
		}
		if err := l.Update(d.objs.DsrlbIngress); err != nil {
			l.Close()
			return false, fmt.Errorf("update pinned link: %w", err)
		}
		d.link = l
		d.log.Info("updated pinned tcx link", "interface", d.opts.Interface)
		return true, nil
	}
	err = errors.Join(l.Unpin(), l.Close())
	if err != nil {
		return false, fmt.Errorf("remove pinned link of another interface: %w", err)
	}
	return false, nil
}

func (d *Datapath) attachClsact(ifindex int) error {
	// Forced back to clsact: a pinned tcx link would run first; remove it.
	if path := d.pin(pinLink); path != "" {
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			if err := errors.Join(l.Unpin(), l.Close()); err != nil {
				return fmt.Errorf("remove pinned tcx link: %w", err)
			}
		}
	}
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return fmt.Errorf("add clsact qdisc to %s: %w", d.opts.Interface, err)
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    netlink.MakeHandle(0, 1),
			Priority:  clsactPrio,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           d.objs.DsrlbIngress.FD(),
		Name:         clsactFilterName,
		DirectAction: true,
	}
	if err := d.beginSwap(); err != nil {
		return err
	}
	if err := netlink.FilterReplace(filter); err != nil {
		return fmt.Errorf("add cls_bpf filter to %s: %w", d.opts.Interface, err)
	}
	d.clsact = ifindex
	d.log.Info("attached with clsact", "interface", d.opts.Interface)
	// Ours forwards from here (the filter holds it): a failed pin is
	// logged, not returned, as in attachTCX. Nothing reads the pin back;
	// Detach finds the filter by name.
	if path := d.pin(pinProgram); path != "" {
		os.Remove(path)
		err := d.fault("attach cleanup")
		if err == nil {
			err = d.objs.DsrlbIngress.Pin(path)
		}
		if err != nil {
			d.log.Warn("attached, but the program could not be pinned; lbd detach still removes its filter", "pin", path, "err", err)
		}
	}
	return nil
}

// Detach stops forwarding: removes the link (or the cls_bpf filter) and
// its pin. Maps stay; Attach resumes.
func (d *Datapath) Detach() error {
	var errs []error
	if d.link == nil && d.opts.PinPath != "" {
		if l, err := link.LoadPinnedLink(d.pin(pinLink), nil); err == nil {
			d.link = l
		}
	}
	if d.link != nil {
		if d.opts.PinPath != "" {
			errs = append(errs, d.link.Unpin())
		}
		errs = append(errs, d.link.Close())
		d.link = nil
	}
	errs = append(errs, d.detachClsact())
	if path := d.pin(pinProgram); path != "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach program: %w", err)
	}
	return nil
}

// detachClsact deletes our filter from the interface's clsact ingress, if
// present. The qdisc stays: other tools may have filters under it.
func (d *Datapath) detachClsact() error {
	links, err := d.clsactCandidates()
	if err != nil {
		return err
	}
	for _, l := range links {
		filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
		if err != nil {
			continue // no clsact qdisc
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == clsactFilterName && bf.Priority == clsactPrio {
				if err := netlink.FilterDel(f); err != nil {
					return fmt.Errorf("delete cls_bpf filter on %s: %w", l.Attrs().Name, err)
				}
			}
		}
	}
	d.clsact = 0
	return nil
}

// clsactCandidates is the configured interface, or every interface when
// none is known (lbd detach with a lost configuration must still find the
// filter rather than leave a program forwarding without health checks).
func (d *Datapath) clsactCandidates() ([]netlink.Link, error) {
	if d.opts.Interface != "" {
		l, err := netlink.LinkByName(d.opts.Interface)
		if err != nil {
			return nil, nil // interface gone: so is the filter
		}
		return []netlink.Link{l}, nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces to find the cls_bpf filter: %w", err)
	}
	return links, nil
}

// detachStrayTCX detaches every other dsrlb program attached with tcx to
// the interface: one pinned under another pin path (pin_path changed, then
// a restart) runs first and would keep redirecting with maps nobody updates
// any more. Failures are logged: forwarding with ours works regardless.
func (d *Datapath) detachStrayTCX(ifindex int, ours link.Link) {
	info, err := ours.Info()
	if err != nil {
		return
	}
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		d.log.Warn("cannot list tcx programs to find stray dsrlb ones", "interface", d.opts.Interface, "err", err)
		return
	}
	for _, ap := range res.Programs {
		lid, ok := ap.LinkID()
		if !ok || lid == info.ID || !isDsrlbProgram(ap.ID) {
			continue
		}
		l, err := link.NewFromID(lid)
		if err == nil {
			err = errors.Join(l.Detach(), l.Close())
		}
		if err != nil {
			d.log.Warn("stray dsrlb program left attached; remove it with lbd detach --config OLD", "interface", d.opts.Interface, "link_id", lid, "err", err)
			continue
		}
		d.log.Warn("detached a stray dsrlb program of another pin path; remove its pins (lbd detach --config OLD or rm -r the old pin_path)",
			"interface", d.opts.Interface, "link_id", lid)
	}
}

func isDsrlbProgram(id ebpf.ProgramID) bool {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return false
	}
	defer p.Close()
	info, err := p.Info()
	return err == nil && info.Name == "dsrlb_ingress"
}
