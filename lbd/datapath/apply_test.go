package datapath

import (
	"testing"

	"github.com/cilium/ebpf"
)

func TestApplyLifecycle(t *testing.T) {
	d := mustOpen(t, Options{ConntrackSize: 2048, MaxServices: 8, MaxBackends: 64})
	for name, want := range map[*ebpf.Map]uint32{d.objs.LbConntrack: 2048, d.objs.LbCt4: 2048, d.objs.LbMaglev: 8, d.objs.LbBackends: 64} {
		if info, err := name.Info(); err != nil || info.MaxEntries != want {
			t.Fatalf("map %v: max entries %v (%v), want %d from Options", name, info, err, want)
		}
	}
	be := func(addr string, i int) []Backend {
		return []Backend{{Name: addr, Addr: ip4(addr), MAC: beMAC(i), Weight: 1, State: Up}}
	}
	a := Service{Name: "a", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80, 443}, Backends: be("192.0.2.11", 1)}
	b := Service{Name: "b", VIP: ip4("192.0.2.20"), Proto: TCP, Ports: []uint16{80}, Backends: be("192.0.2.21", 2)}
	mustApply(t, d, a, b)
	r := flowRun{d, t}
	src := "198.51.100.1:999"
	to := func(dst string) int { return r.open(Flow{Src: ap(src), Dst: ap(dst), Proto: TCP}) }
	if to("192.0.2.10:443") != 1 || to("192.0.2.20:80") != 2 {
		t.Fatal("initial services not forwarding")
	}

	// b goes away, a gives 443 to a new service c.
	a.Ports = []uint16{80}
	c := Service{Name: "c", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{443}, Backends: be("192.0.2.31", 3)}
	mustApply(t, d, a, c)
	// A tracked flow stays on its backend while that backend exists, even
	// when its port moved to another service: established connections drain.
	if got := r.send(Flow{Src: ap(src), Dst: ap("192.0.2.10:443"), Proto: TCP}, false); got != 1 {
		t.Fatalf("tracked flow to 443 moved to backend %d, want to stay on 1", got)
	}
	src = "198.51.100.1:1000"
	if got := to("192.0.2.10:443"); got != 3 {
		t.Fatalf("port 443 after moving to c: backend %d, want 3", got)
	}
	if got := to("192.0.2.10:80"); got != 1 {
		t.Fatalf("port 80 of a: backend %d, want 1", got)
	}
	if got := to("192.0.2.20:80"); got != -1 {
		t.Fatalf("removed service b still forwards (backend %d)", got)
	}
	if n := len(d.state.backends); n != 2 {
		t.Fatalf("%d backends allocated, want 2 (b's freed)", n)
	}
	var used int
	var v bpfLbBackend
	var id uint32
	for it := d.objs.LbBackends.Iterate(); it.Next(&id, &v); {
		if v.State != 0 {
			used++
		}
	}
	if used != 2 {
		t.Fatalf("%d backend slots in use in the map, want 2", used)
	}
	if err := d.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if got := to("192.0.2.10:80"); got != -1 {
		t.Fatalf("empty config still forwards (backend %d)", got)
	}
}
