package daemon

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/shared/config"
)

// ecmpConfig has a maglev and a source service: the schedulers whose
// choice does not depend on which balancer ECMP picks.
const ecmpConfig = `balancer:
  interface: eth0
  maglev_table_size: 65537
services:
  - name: web
    vip: 192.0.2.10
    ports: [80, 443]
    balance: maglev
    servers:
      - {name: b1, address: 192.0.2.11, mac: "02:00:00:00:00:11", weight: 3}
      - {name: b2, address: 192.0.2.12, mac: "02:00:00:00:00:12"}
      - {name: b3, address: 192.0.2.13, mac: "02:00:00:00:00:13"}
      - {name: b4, address: 192.0.2.14, mac: "02:00:00:00:00:14", weight: 0}
  - name: sticky
    vip: 2001:db8::20
    ports: [443]
    balance: source
    servers:
      - {name: b1, address: "2001:db8::11", mac: "02:00:00:00:00:11"}
      - {name: b2, address: "2001:db8::12", mac: "02:00:00:00:00:12"}
`

// TestBalancersDecideAlike: two data planes programmed from the same file
// send every flow to the same backend, even when their histories differ
// (the second saw a backend down and another service first). This is what
// lets ECMP move a flow to another balancer without breaking it: the
// flow's packets, conntrack entry or not, reach the same backend.
func TestBalancersDecideAlike(t *testing.T) {
	nettest.RequireBPF(t)
	cfg, err := config.Parse("ecmp.yaml", []byte(ecmpConfig))
	if err != nil {
		t.Fatal(err)
	}
	allUp := observed{health: map[string]health.State{}}
	for _, s := range cfg.Services {
		for _, srv := range s.Servers {
			allUp.health[health.Key(s.Name, srv.Name)] = health.Up
		}
	}
	final, _ := desired(cfg, allUp)

	// History of the second balancer: b2 down, an extra service first.
	degraded := observed{health: map[string]health.State{}}
	for k, v := range allUp.health {
		degraded.health[k] = v
	}
	degraded.health[health.Key("web", "b2")] = health.Down
	early, _ := desired(cfg, degraded)
	extra := datapath.Service{Name: "extra", VIP: netip.MustParseAddr("192.0.2.30"), Proto: datapath.TCP, Ports: []uint16{80},
		Backends: []datapath.Backend{{Name: "x", Addr: netip.MustParseAddr("192.0.2.31"), Weight: 1, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0x31}, State: datapath.Up}}}

	dp1 := openTest(t, cfg)
	dp2 := openTest(t, cfg)
	mustApply(t, dp2, append([]datapath.Service{extra}, early...))
	mustApply(t, dp1, final)
	mustApply(t, dp2, final)

	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range cfg.Services {
		counts := map[string]int{}
		for i := 0; i < 20000; i++ {
			var src netip.Addr
			if s.VIP.Is4() {
				src = netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.IntN(256))})
			} else {
				src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(rng.IntN(256)), 15: byte(rng.IntN(256))})
			}
			f := datapath.Flow{
				Src:   netip.AddrPortFrom(src, uint16(1024+rng.IntN(64000))),
				Dst:   netip.AddrPortFrom(s.VIP, s.Ports[rng.IntN(len(s.Ports))]),
				Proto: datapath.TCP,
			}
			a, err1 := dp1.LookupFlow(f)
			b, err2 := dp2.LookupFlow(f)
			if err1 != nil || err2 != nil {
				t.Fatalf("lookup %v: %v, %v", f, err1, err2)
			}
			if a.Backend == "" || a.Addr != b.Addr {
				t.Fatalf("flow %v: balancer 1 sends it to %q (%s), balancer 2 to %q (%s)", f, a.Backend, a.Why, b.Backend, b.Why)
			}
			counts[a.Backend]++
		}
		t.Logf("%s (%s): 20000 flows, same backend on both balancers: %v", s.Name, s.Balance, counts)
		if counts["b4"] != 0 {
			t.Errorf("drained b4 got new flows: %v", counts)
		}
	}
}

var testSeq int

func openTest(t *testing.T, cfg *config.Config) *datapath.Datapath {
	t.Helper()
	testSeq++
	pin := nettest.PinPath(t, fmt.Sprintf("dsrlb-test-ecmp-%d-%d-", os.Getpid(), testSeq))
	opts := DataplaneOptions(cfg.Balancer)
	opts.Interface, opts.PinPath = "", pin
	opts.InterfaceMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1} // no interface: nothing is attached
	d, err := datapath.Open(opts, nil)
	if err != nil {
		t.Fatalf("open data plane: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func mustApply(t *testing.T, d dataPlane, svcs []datapath.Service) {
	t.Helper()
	if err := d.Apply(svcs); err != nil {
		t.Fatalf("apply: %v", err)
	}
}
