package cli

import (
	"bytes"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/shared/config"
)

// TestFlowsDoc: flows are named from the configuration, filtered by
// service, bounded by the limit, and the text table is printed from the
// same rows as --json.
func TestFlowsDoc(t *testing.T) {
	vip := netip.MustParseAddr("192.0.2.10")
	cfg := &config.Config{Balancer: config.Balancer{PinPath: "/sys/fs/bpf/dsrlb"}, Services: []config.Service{{
		Name: "web", VIP: vip, Protocol: config.TCP, Ports: []uint16{80},
		Servers: []config.Server{{Name: "b1", Address: netip.MustParseAddr("192.0.2.11")}}}}}
	flow := func(port uint16, vipPort uint16, be string) datapath.TrackedFlow {
		return datapath.TrackedFlow{Flow: datapath.Flow{Proto: datapath.TCP, Src: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), port),
			Dst: netip.AddrPortFrom(vip, vipPort)}, ServiceVIP: vip, ServiceProto: datapath.TCP, ServicePorts: []uint16{vipPort},
			Backend: netip.MustParseAddr(be), State: datapath.Established, Idle: 1500 * time.Millisecond}
	}
	flows := []datapath.TrackedFlow{flow(40002, 80, "192.0.2.11"), flow(40001, 80, "192.0.2.11"), flow(40003, 443, "192.0.2.12")}
	doc := flowsDoc(cfg, flows, 3, "", 10)
	if doc.Total != 3 || len(doc.Flows) != 3 || doc.Source != "lbd flows" || doc.SchemaVersion != 1 {
		t.Fatalf("doc %+v, want 3 of 3", doc)
	}
	f := doc.Flows[0]
	if f.Service != "web" || f.Backend != "b1" || f.Client != "198.51.100.7" || f.ClientPort != 40001 || f.VIP != "192.0.2.10" ||
		f.Port != 80 || f.State != "established" || f.IdleSeconds != 1.5 || f.Protocol != "tcp" {
		t.Errorf("first flow %+v, want web/b1 from 198.51.100.7:40001 (sorted)", f)
	}
	if other := doc.Flows[2]; other.Service != "192.0.2.10/tcp" || other.Backend != "192.0.2.12" {
		t.Errorf("unconfigured service's flow %+v, want named by VIP/protocol and address", other)
	}
	web := flowsDoc(cfg, flows, 3, "web", 1)
	if web.Total != 2 || len(web.Flows) != 1 || web.Service != "web" {
		t.Errorf("web, limit 1: total %d, %d listed, want 2 and 1", web.Total, len(web.Flows))
	}
	var out bytes.Buffer
	printFlows(&out, doc)
	row := regexp.MustCompile(`(?m)^web\s+tcp\s+198\.51\.100\.7:40001\s+192\.0\.2\.10:80\s+b1\s+192\.0\.2\.11\s+established\s+2s$`)
	if !row.MatchString(out.String()) || !strings.Contains(out.String(), "3 of 3 tracked flows shown") {
		t.Errorf("text table lacks the first flow or the count:\n%s", out.String())
	}
}
