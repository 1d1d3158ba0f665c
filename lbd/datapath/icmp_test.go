package datapath

import (
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// replyOf returns the IP packet a backend sends back for the flow of p
// (VIP -> client), as an ICMP error quotes it.
func replyOf(t *testing.T, p pkt) []byte {
	r := p
	r.src, r.dst = p.dst, p.src
	r.syn, r.ack = true, true
	return build(t, r)[14:]
}

// icmp4 is a router's ICMP error (or echo) sent to the VIP 192.0.2.10.
func icmp4(t *testing.T, typ, code uint8, quoted []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: cliMAC, DstMAC: hostMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: ip4("203.0.113.1").AsSlice(), DstIP: ip4("192.0.2.10").AsSlice()}
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return serialize(t, eth, ip, ic, gopacket.Payload(append(quoted, 0)))
}

// icmp6 is an ICMPv6 message to the VIP 2001:db8::10.
func icmp6(t *testing.T, typ uint8, quoted []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: cliMAC, DstMAC: hostMAC, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: ip4("2001:db8:ff::1").AsSlice(), DstIP: ip4("2001:db8::10").AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, ic, gopacket.Payload(append([]byte{0, 0, 5, 0xdc}, quoted...)))
}

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("build frame: %v", err)
	}
	return buf.Bytes()
}
