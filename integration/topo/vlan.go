package topo

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netorder"
)

// This kernel has no 8021q (no VLAN devices) and no bridge vlan_filtering,
// so the VLAN variant tags in BPF: on every host's eth0 a cls_bpf egress
// program pushes the segment's tag on untagged frames and a cls_bpf
// ingress program pops it. The wire (the bridge) carries only tagged
// frames. cls_bpf runs after tcx, so lbd's tcx program on the balancer
// still sees the tag (in skb metadata, as on a real trunk) and the host
// stack behind it sees untagged frames, as above a VLAN device.

// Offsets in struct __sk_buff (uapi/linux/bpf.h).
const (
	skbVlanPresent = 20
	skbVlanTCI     = 24
)

func vlanPrograms(vid int) (push, pop *ebpf.Program, err error) {
	pushSpec := &ebpf.ProgramSpec{Name: "dsrit_vlan_push", Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, skbVlanPresent, asm.Word),
		asm.JNE.Imm(asm.R2, 0, "out"), // already tagged (a frame lbd redirected): keep it
		asm.Mov.Imm(asm.R2, int32(netorder.Htons(unix.ETH_P_8021Q))),
		asm.Mov.Imm(asm.R3, int32(vid)),
		asm.FnSkbVlanPush.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), // TC_ACT_OK
		asm.Return(),
	}}
	popSpec := &ebpf.ProgramSpec{Name: "dsrit_vlan_pop", Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, skbVlanPresent, asm.Word),
		asm.JEq.Imm(asm.R2, 0, "out"),
		asm.LoadMem(asm.R2, asm.R1, skbVlanTCI, asm.Word),
		asm.And.Imm(asm.R2, 0x0fff),
		asm.JNE.Imm(asm.R2, int32(vid), "out"),
		asm.FnSkbVlanPop.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}}
	if push, err = ebpf.NewProgram(pushSpec); err != nil {
		return nil, nil, fmt.Errorf("load vlan push program: %w", err)
	}
	if pop, err = ebpf.NewProgram(popSpec); err != nil {
		push.Close()
		return nil, nil, fmt.Errorf("load vlan pop program: %w", err)
	}
	return push, pop, nil
}

// tagLink attaches push (egress) and pop (ingress) to h's eth0 with
// clsact + cls_bpf direct-action.
func tagLink(h *Host, push, pop *ebpf.Program) error {
	l, err := h.NS.handle.LinkByName(h.Link)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", h.Link, h.NS.Name, err)
	}
	q := &netlink.GenericQdisc{QdiscType: "clsact", QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := h.NS.handle.QdiscAdd(q); err != nil {
		return fmt.Errorf("add clsact on %s in %s: %w", h.Link, h.NS.Name, err)
	}
	for _, f := range []struct {
		parent uint32
		prog   *ebpf.Program
	}{{netlink.HANDLE_MIN_EGRESS, push}, {netlink.HANDLE_MIN_INGRESS, pop}} {
		filter := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: f.parent,
			Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1}, Fd: f.prog.FD(), Name: "dsrit-vlan", DirectAction: true}
		if err := h.NS.handle.FilterAdd(filter); err != nil {
			return fmt.Errorf("add vlan filter on %s in %s: %w", h.Link, h.NS.Name, err)
		}
	}
	return nil
}
