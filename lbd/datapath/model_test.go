package datapath

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/dsrlb/dsrlb/lbd/maglev"
)

func manyBackends(prefix string, n int, rng *rand.Rand) []Backend {
	out := make([]Backend, n)
	for i := range out {
		addr := netip.MustParseAddr(fmt.Sprintf(prefix, i+1))
		out[i] = Backend{Name: fmt.Sprintf("b%d", i), Addr: addr, MAC: beMAC(i), Weight: 1 + uint32(rng.IntN(10)), State: Up}
	}
	return out
}

// predict returns the backend index the Go model expects for a new flow.
func predict(t *testing.T, s Service, f Flow, size uint32) int {
	t.Helper()
	var pop []maglev.Backend
	var idx []int
	for i, b := range s.Backends {
		if b.usable() {
			pop = append(pop, maglev.Backend{Key: b.Addr.String(), Weight: b.Weight})
			idx = append(idx, i)
		}
	}
	table, err := maglev.Build(pop, size)
	if err != nil {
		t.Fatal(err)
	}
	return idx[table[Slot(s.Scheduler, f, size)]]
}

func randomFlow(rng *rand.Rand, vip netip.Addr, proto Proto) Flow {
	var src netip.Addr
	if vip.Is4() {
		src = netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.IntN(256))})
	} else {
		b := netip.MustParseAddr("2001:db8:1::").As16()
		b[14], b[15] = byte(rng.IntN(256)), byte(rng.IntN(256))
		src = netip.AddrFrom16(b)
	}
	return Flow{Src: netip.AddrPortFrom(src, uint16(1024+rng.IntN(60000))), Dst: netip.AddrPortFrom(vip, 80), Proto: proto}
}

func macIndex(t *testing.T, out []byte) int {
	t.Helper()
	mac := net.HardwareAddr(out[:6])
	if mac[0] != 0x02 || mac[1] != 0xbe {
		t.Fatalf("destination MAC %s is not a backend's", mac)
	}
	return int(mac[4])<<8 | int(mac[5])
}

// TestModelPredictsBackend: for 10,000 random flows the program picks the
// backend the Go model (jhash + maglev.Build) predicts.
func TestModelPredictsBackend(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const size = 1009
	d := mustOpen(t, Options{MaglevTableSize: size, ConntrackSize: 65536})
	svcs := []Service{
		{Name: "m4", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Scheduler: Maglev, Backends: manyBackends("192.0.2.%d", 20, rng)},
		{Name: "m6", VIP: ip4("2001:db8::10"), Proto: UDP, Ports: []uint16{80}, Scheduler: Maglev, Backends: manyBackends("2001:db8::1:%x", 20, rng)},
		{Name: "s4", VIP: ip4("192.0.2.200"), Proto: TCP, Ports: []uint16{80}, Scheduler: Source, Backends: manyBackends("192.0.2.%d", 20, rng)},
	}
	svcs[0].Backends[3].State = Down
	svcs[0].Backends[4].State = Drain
	svcs[1].Backends[5].Weight = 0
	mustApply(t, d, svcs...)
	for i := range 10000 {
		s := svcs[i%len(svcs)]
		f := randomFlow(rng, s.VIP, s.Proto)
		p := pkt{src: f.Src, dst: f.Dst, proto: f.Proto, syn: true}
		verdict, out := run(t, d, build(t, p))
		if verdict != VerdictRedirect {
			t.Fatalf("flow %v: verdict %d", f, verdict)
		}
		got := macIndex(t, out)
		if want := predict(t, s, f, size); got != want {
			t.Fatalf("flow %v of %s: program chose backend %d, model predicts %d", f, s.Name, got, want)
		}
		if s.Name == "m4" && i%30 == 0 {
			// A router's "fragmentation needed" about the reply reaches the same backend.
			verdict, out := run(t, d, icmp4(t, 3, 4, replyOf(t, p)))
			if verdict != VerdictRedirect || macIndex(t, out) != got {
				t.Fatalf("ICMP error about flow %v: verdict %d, backend %d, want the flow's %d", f, verdict, macIndex(t, out), got)
			}
		}
	}
}

type maglevBackend struct {
	key    string
	weight uint32
}

type maglevBackends []maglevBackend

func (m maglevBackends) pop() []maglev.Backend {
	out := make([]maglev.Backend, len(m))
	for i, b := range m {
		out[i] = maglev.Backend{Key: b.key, Weight: b.weight}
	}
	return out
}
