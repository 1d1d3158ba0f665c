package datapath

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// FuzzProgram feeds arbitrary frames to the program and checks that nothing
// is redirected unless an independent decoder (gopacket) sees a packet to
// a configured service, and that only the MACs ever change.
func FuzzProgram(f *testing.F) {
	d := mustOpen(f, Options{})
	svcs := tableServices()
	mustApply(f, d, svcs...)
	for _, c := range progCases(&testing.T{}) {
		f.Add(c.frame)
	}
	// A check reply, so the fuzzer starts from the one dropped kind.
	f.Add(build(&testing.T{}, pkt{src: ap("192.0.2.10:80"), dst: ap("198.51.100.1:61000"), proto: TCP, syn: true, ack: true}))
	keys := map[bpfLbServiceKey]bool{}
	vips := map[netip.Addr]bool{}
	for i := range svcs {
		for _, k := range svcs[i].keys() {
			keys[k] = true
		}
		vips[svcs[i].VIP] = true
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		out := make([]byte, len(frame)+256)
		opts := runOpts(frame, out)
		ret, err := d.Program().Run(opts)
		if err != nil {
			return // the kernel refused the frame (shorter than its L3 header)
		}
		verdict := int(int32(ret))
		switch verdict {
		case VerdictContinue:
			if !bytes.Equal(opts.DataOut, frame) {
				t.Fatalf("passed frame was modified")
			}
		case VerdictRedirect:
			if !bytes.Equal(opts.DataOut[12:], frame[12:]) || !bytes.Equal(opts.DataOut[6:12], ifMAC) {
				t.Fatalf("redirect changed more than the MACs")
			}
			if why := configuredFlow(frame, keys, vips); why != "" {
				t.Fatalf("redirected a frame that is not a configured flow: %s\n%x", why, frame)
			}
		case VerdictDrop:
			if why := checkReply(frame, keys); why != "" {
				t.Fatalf("dropped a frame that is no answer to a DSR-path check: %s\n%x", why, frame)
			}
		default:
			t.Fatalf("unexpected verdict %d", verdict)
		}
	})
}

// configuredFlow returns "" when frame decodes as a packet the program may
// forward: to a VIP, and with ports that match a service unless it is a
// fragment or an ICMP error.
func configuredFlow(frame []byte, keys map[bpfLbServiceKey]bool, vips map[netip.Addr]bool) string {
	p := gopacket.NewPacket(stripIPv4Options(frame), layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var dst netip.Addr
	var proto Proto
	fragment := false
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		fragment = ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0
	case *layers.IPv6:
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		_, fragment = walkV6(frame)
	default:
		return "no IP layer"
	}
	if !vips[dst] {
		return "destination " + dst.String() + " is not a VIP"
	}
	if fragment || p.Layer(layers.LayerTypeICMPv4) != nil || p.Layer(layers.LayerTypeICMPv6) != nil {
		return ""
	}
	var port uint16
	tl := p.TransportLayer()
	if tl == nil {
		tl, _ = walkV6(frame)
	}
	if tcp, ok := tl.(*layers.TCP); ok {
		port, proto = uint16(tcp.DstPort), TCP
	} else if udp, ok := tl.(*layers.UDP); ok {
		port, proto = uint16(udp.DstPort), UDP
	} else {
		return "no TCP/UDP header"
	}
	if keys[serviceKey(dst, proto, port)] || keys[serviceKey(dst, proto, 0)] {
		return ""
	}
	return "no service for the port"
}

// checkReply returns "" when frame decodes as what the program may drop:
// TCP, not a fragment, from a service's VIP:port to a check port.
func checkReply(frame []byte, keys map[bpfLbServiceKey]bool) string {
	p := gopacket.NewPacket(stripIPv4Options(frame), layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var src netip.Addr
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			return "a fragment"
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
	case *layers.IPv6:
		if _, frag := walkV6(frame); frag {
			return "a fragment"
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP)
	default:
		return "no IP layer"
	}
	tl := p.TransportLayer()
	if tl == nil {
		tl, _ = walkV6(frame)
	}
	tcp, ok := tl.(*layers.TCP)
	if !ok {
		return "not TCP"
	}
	if uint16(tcp.DstPort) < CheckPortMin || uint16(tcp.DstPort) > CheckPortMax {
		return "destination port not a check port"
	}
	if !keys[serviceKey(src, TCP, uint16(tcp.SrcPort))] && !keys[serviceKey(src, TCP, 0)] {
		return "source is no service's VIP:port"
	}
	return ""
}

// stripIPv4Options removes IPv4 options: the program skips them by length
// without validating them (the backend's stack does), while gopacket
// refuses to decode a packet whose options are malformed.
func stripIPv4Options(frame []byte) []byte {
	off := 14
	if len(frame) >= 18 && (frame[12] == 0x81 || frame[12] == 0x88) {
		off = 18
	}
	if len(frame) < off+20 || frame[off]>>4 != 4 || frame[off]&0xf <= 5 {
		return frame
	}
	hlen := int(frame[off]&0xf) * 4
	if len(frame) < off+hlen {
		return frame
	}
	out := append([]byte{}, frame[:off+20]...)
	out[off] = 0x45
	tot := int(out[off+2])<<8 | int(out[off+3])
	tot -= hlen - 20
	out[off+2], out[off+3] = byte(tot>>8), byte(tot)
	return append(out, frame[off+hlen:]...)
}

// walkV6 walks IPv6 extension headers by length (gopacket refuses
// malformed option TLVs, which the program does not validate): it reports
// whether a fragment header was seen and decodes the TCP/UDP header after
// the chain.
func walkV6(frame []byte) (gopacket.TransportLayer, bool) {
	off := 14
	if len(frame) >= 18 && (frame[12] == 0x81 || frame[12] == 0x88) {
		off = 18
	}
	if len(frame) < off+40 || frame[off]>>4 != 6 {
		return nil, false
	}
	end := off + 40 + (int(frame[off+4])<<8 | int(frame[off+5]))
	if end > len(frame) {
		return nil, false
	}
	nh, pos, frag := frame[off+6], off+40, false
	for i := 0; i < 8 && (nh == 0 || nh == 43 || nh == 60 || nh == 44 || nh == 51); i++ {
		if pos+8 > end {
			return nil, frag
		}
		switch nh {
		case 44:
			if (int(frame[pos+2])<<8|int(frame[pos+3]))&0xfff9 != 0 {
				frag = true
			}
			nh, pos = frame[pos], pos+8
		case 51:
			nh, pos = frame[pos], pos+(int(frame[pos+1])+2)*4
		default:
			nh, pos = frame[pos], pos+(int(frame[pos+1])+1)*8
		}
	}
	if pos > end || frag {
		return nil, frag
	}
	var lt gopacket.LayerType
	switch nh {
	case 6:
		lt = layers.LayerTypeTCP
	case 17:
		lt = layers.LayerTypeUDP
	default:
		return nil, false
	}
	return gopacket.NewPacket(frame[pos:end], lt, gopacket.Default).TransportLayer(), false
}
