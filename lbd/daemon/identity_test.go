package daemon

import (
	"net/netip"
	"testing"

	"github.com/dsrlb/dsrlb/lbd/datapath"
)

const identityConfig = `
balancer: {interface: eth0}
services:
  - {name: web, vip: 192.0.2.10, ports: [443, 80], servers: [{name: a, address: 192.0.2.11}]}
  - {name: alt, vip: 192.0.2.10, ports: [8080], servers: [{name: x, address: 192.0.2.11}]}
  - {name: any, vip: 192.0.2.10, check: {type: none}, servers: [{name: y, address: 192.0.2.12}]}
  - {name: dns, vip: 192.0.2.10, protocol: udp, ports: [53], servers: [{name: d, address: 192.0.2.11}]}
`

// TestIdentity: a pinned service is its (VIP, protocol, ports) whatever
// the order of the ports; a backend is its address within its service; a
// packet's service is the one listing its port before the every-port one.
func TestIdentity(t *testing.T) {
	id := IdentityOf(mustParse(t, identityConfig))
	vip := netip.MustParseAddr("192.0.2.10")
	for _, c := range []struct {
		proto datapath.Proto
		ports []uint16
		want  string
	}{
		{datapath.TCP, []uint16{80, 443}, "web"}, {datapath.TCP, []uint16{443, 80}, "web"},
		{datapath.TCP, []uint16{8080}, "alt"}, {datapath.TCP, nil, "any"},
		{datapath.UDP, []uint16{53}, "dns"}, {datapath.TCP, []uint16{53}, ""}, {datapath.TCP, []uint16{80}, ""},
	} {
		got := ""
		if s := id.Service(vip, c.proto, c.ports); s != nil {
			got = s.Name
		}
		if got != c.want {
			t.Errorf("Service(%v %v) = %q, want %q", c.proto, c.ports, got, c.want)
		}
	}
	a := netip.MustParseAddr("192.0.2.11")
	if srv := Server(id.Service(vip, datapath.TCP, []uint16{8080}), a); srv == nil || srv.Name != "x" {
		t.Errorf("backend 192.0.2.11 of alt = %v, want x", srv)
	}
	if Server(id.Service(vip, datapath.TCP, nil), a) != nil || Server(nil, a) != nil {
		t.Error("a server found in a service that has no such address")
	}
	for port, want := range map[uint16]string{80: "web", 8080: "alt", 22: "any"} {
		if s := id.ServiceFor(datapath.TCP, netip.AddrPortFrom(vip, port)); s == nil || s.Name != want {
			t.Errorf("ServiceFor(tcp %d) = %v, want %s", port, s, want)
		}
	}
	if s := id.ServiceFor(datapath.UDP, netip.AddrPortFrom(vip, 80)); s != nil {
		t.Errorf("ServiceFor(udp 80) = %s, want none", s.Name)
	}
}
