package health

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"

	"github.com/dsrlb/dsrlb/lbd/datapath"
)

// Source ports of DSR-path checks: above Linux's default ephemeral range
// (32768-60999), so a check never shares a 4-tuple with a kernel socket of
// the balancer, and narrow enough for the socket filter to pass only
// replies to checks. The data plane drops replies to these ports after
// this socket got them (so the stack never resets a check): one range,
// defined in bpf/lib/common.h.
const (
	dsrPortLo = datapath.CheckPortMin
	dsrPortHi = datapath.CheckPortMax
)

// maxFilterAddrs bounds the balancer addresses a filter matches (per
// family), which keeps every jump within the 255 instructions it can skip.
const maxFilterAddrs = 8

// dsrFilter is the classic BPF program of the check socket: it keeps only
// TCP segments to one of the balancer's own addresses (own) whose
// destination port is in [dsrPortLo, dsrPortHi], so client traffic for the
// VIPs, however heavy, is never copied to lbd. IPv4 options are handled
// (the header length is read); IPv6 extension headers are not: a SYN-ACK
// carries none.
func dsrFilter(own []netip.Addr) ([]bpf.RawInstruction, error) {
	var v4, v6 []netip.Addr
	for _, a := range own {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	if len(v4) > maxFilterAddrs || len(v6) > maxFilterAddrs {
		return nil, fmt.Errorf("build check socket filter: more than %d addresses of one family", maxFilterAddrs)
	}
	// Built back to front would be shorter; labels keep it readable.
	var p []bpf.Instruction
	var fix []func() // patch jumps once the label offsets are known
	accept, drop, six := -1, -1, -1
	jumpTo := func(target *int, cond bpf.JumpTest, val uint32, onTrue bool) {
		i := len(p)
		p = append(p, bpf.JumpIf{Cond: cond, Val: val})
		fix = append(fix, func() {
			j := p[i].(bpf.JumpIf)
			skip := uint8(*target - i - 1)
			if onTrue {
				j.SkipTrue = skip
			} else {
				j.SkipFalse = skip
			}
			p[i] = j
		})
	}
	// jeq val ? next : target (fallthrough on match)
	mustEq := func(target *int, val uint32) {
		i := len(p)
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: val})
		fix = append(fix, func() {
			j := p[i].(bpf.JumpIf)
			j.SkipFalse = uint8(*target - i - 1)
			p[i] = j
		})
	}
	portRange := func() {
		jumpTo(&drop, bpf.JumpLessThan, uint32(dsrPortLo), true)
		jumpTo(&drop, bpf.JumpGreaterThan, uint32(dsrPortHi), true)
		p = append(p, bpf.Jump{}) // to accept, patched below
		i := len(p) - 1
		fix = append(fix, func() { p[i] = bpf.Jump{Skip: uint32(accept - i - 1)} })
	}

	p = append(p, bpf.LoadAbsolute{Off: 12, Size: 2}) // EtherType
	jumpTo(&six, bpf.JumpEqual, 0x86dd, true)
	mustEq(&drop, 0x0800)
	p = append(p, bpf.LoadAbsolute{Off: 14 + 9, Size: 1}) // IPv4 protocol
	mustEq(&drop, 6)
	p = append(p, bpf.LoadAbsolute{Off: 14 + 6, Size: 2}) // fragment offset
	jumpTo(&drop, bpf.JumpBitsSet, 0x1fff, true)
	p = append(p, bpf.LoadAbsolute{Off: 14 + 16, Size: 4}) // destination
	var v4ok int
	for _, a := range v4 {
		b := a.As4()
		jumpTo(&v4ok, bpf.JumpEqual, binary.BigEndian.Uint32(b[:]), true)
	}
	p = append(p, bpf.Jump{}) // no address matched: drop
	nomatch4 := len(p) - 1
	fix = append(fix, func() { p[nomatch4] = bpf.Jump{Skip: uint32(drop - nomatch4 - 1)} })
	v4ok = len(p)
	p = append(p, bpf.LoadMemShift{Off: 14})              // X = IPv4 header length
	p = append(p, bpf.LoadIndirect{Off: 14 + 2, Size: 2}) // TCP destination port
	portRange()

	six = len(p)
	p = append(p, bpf.LoadAbsolute{Off: 14 + 6, Size: 1}) // IPv6 next header
	mustEq(&drop, 6)
	for _, a := range v6 {
		b := a.As16()
		next := new(int)
		for w := 0; w < 4; w++ {
			p = append(p, bpf.LoadAbsolute{Off: uint32(14 + 24 + 4*w), Size: 4})
			mustEq(next, binary.BigEndian.Uint32(b[4*w:]))
		}
		p = append(p, bpf.LoadAbsolute{Off: 14 + 40 + 2, Size: 2})
		portRange()
		*next = len(p)
	}
	drop = len(p)
	p = append(p, bpf.RetConstant{Val: 0})
	accept = len(p)
	p = append(p, bpf.RetConstant{Val: 0x40000})
	for _, f := range fix {
		f()
	}
	raw, err := bpf.Assemble(p)
	if err != nil {
		return nil, fmt.Errorf("build check socket filter: %w", err)
	}
	return raw, nil
}
