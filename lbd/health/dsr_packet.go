package health

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TCP flags of a segment, as in the header's flag byte.
const (
	flagFIN = 1 << 0
	flagSYN = 1 << 1
	flagRST = 1 << 2
	flagPSH = 1 << 3
	flagACK = 1 << 4
)

// segment is one TCP segment of a DSR-path check, with the Ethernet and IP
// header fields that matter to it.
type segment struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.AddrPort
	seq, ack       uint32
	flags          uint8
	window         uint16
	mss            uint16 // SYN only: the MSS option; 0 sends none
	payload        []byte
}

func (s segment) has(f uint8) bool { return s.flags&f == f }

// marshal builds the Ethernet frame of s with valid IP and TCP checksums.
func (s segment) marshal() ([]byte, error) {
	if s.src.Addr().Is4() != s.dst.Addr().Is4() {
		return nil, fmt.Errorf("build segment %s > %s: mixed address families", s.src, s.dst)
	}
	eth := &layers.Ethernet{SrcMAC: s.srcMAC, DstMAC: s.dstMAC}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(s.src.Port()), DstPort: layers.TCPPort(s.dst.Port()),
		Seq: s.seq, Ack: s.ack, Window: s.window,
		FIN: s.has(flagFIN), SYN: s.has(flagSYN), RST: s.has(flagRST), PSH: s.has(flagPSH), ACK: s.has(flagACK),
	}
	if s.mss != 0 {
		tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4,
			OptionData: []byte{byte(s.mss >> 8), byte(s.mss)}}}
	}
	var ip gopacket.SerializableLayer
	if s.src.Addr().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
			SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice()}
		_ = tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice()}
		_ = tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, tcp, gopacket.Payload(s.payload)); err != nil {
		return nil, fmt.Errorf("build segment %s > %s: %w", s.src, s.dst, err)
	}
	return buf.Bytes(), nil
}

var errNotTCP = errors.New("not a TCP segment over IPv4 or IPv6")

// parseSegment decodes an Ethernet frame carrying a TCP segment. Checksums
// are not verified: a packet socket sees frames from a veth or an
// offloading NIC before the checksum is filled in, and the kernel has
// already dropped frames that arrived corrupt.
func parseSegment(frame []byte) (segment, error) {
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		ip6     layers.IPv6
		tcp     layers.TCP
		payload gopacket.Payload
	)
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &ip6, &tcp, &payload)
	p.IgnoreUnsupported = true
	var decoded []gopacket.LayerType
	if err := p.DecodeLayers(frame, &decoded); err != nil {
		return segment{}, fmt.Errorf("parse frame: %w", err)
	}
	var s segment
	var src, dst netip.Addr
	hasTCP := false
	for _, l := range decoded {
		switch l {
		case layers.LayerTypeIPv4:
			src, _ = netip.AddrFromSlice(ip4.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(ip4.DstIP.To4())
		case layers.LayerTypeIPv6:
			src, _ = netip.AddrFromSlice(ip6.SrcIP)
			dst, _ = netip.AddrFromSlice(ip6.DstIP)
		case layers.LayerTypeTCP:
			hasTCP = true
		}
	}
	if !hasTCP || !src.IsValid() {
		return segment{}, errNotTCP
	}
	s.srcMAC, s.dstMAC = eth.SrcMAC, eth.DstMAC
	s.src = netip.AddrPortFrom(src, uint16(tcp.SrcPort))
	s.dst = netip.AddrPortFrom(dst, uint16(tcp.DstPort))
	s.seq, s.ack, s.window = tcp.Seq, tcp.Ack, tcp.Window
	for _, f := range []struct {
		on  bool
		bit uint8
	}{{tcp.FIN, flagFIN}, {tcp.SYN, flagSYN}, {tcp.RST, flagRST}, {tcp.PSH, flagPSH}, {tcp.ACK, flagACK}} {
		if f.on {
			s.flags |= f.bit
		}
	}
	for _, o := range tcp.Options {
		if o.OptionType == layers.TCPOptionKindMSS && len(o.OptionData) == 2 {
			s.mss = uint16(o.OptionData[0])<<8 | uint16(o.OptionData[1])
		}
	}
	// The parser's payload aliases frame, which the reader reuses.
	s.payload = append([]byte(nil), tcp.Payload...)
	return s, nil
}
