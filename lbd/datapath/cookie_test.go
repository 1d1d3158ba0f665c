package datapath

import (
	"testing"
)

// TestCookiesNeverRepeatAcrossAdopt: a backend created after a restart gets
// a cookie above every cookie handed out before, even ones of backends
// already freed; otherwise stale conntrack entries of a freed backend
// (possibly of another service) would follow a reused slot.
func TestCookiesNeverRepeatAcrossAdopt(t *testing.T) {
	pin := testPinPath(t)
	opts := Options{PinPath: pin}
	d1 := mustOpen(t, opts)
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: []Backend{
		{Name: "a", Addr: ip4("192.0.2.11"), MAC: beMAC(1), Weight: 1, State: Up},
		{Name: "b", Addr: ip4("192.0.2.12"), MAC: beMAC(2), Weight: 1, State: Up},
		{Name: "c", Addr: ip4("192.0.2.13"), MAC: beMAC(3), Weight: 1, State: Up},
	}}
	mustApply(t, d1, svc)
	issued := d1.state.cookie
	onlyA := svc
	onlyA.Backends = svc.Backends[:1]
	mustApply(t, d1, onlyA) // b and c freed: the highest cookies now live nowhere
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}

	d2 := mustOpen(t, opts)
	if !d2.Adopted() {
		t.Fatal("second open did not adopt")
	}
	withD := onlyA
	withD.Backends = append(append([]Backend{}, onlyA.Backends...), Backend{Name: "d", Addr: ip4("192.0.2.14"), MAC: beMAC(4), Weight: 1, State: Up})
	mustApply(t, d2, withD)
	id := d2.state.services[d2.state.keyOwner[serviceKey(svc.VIP, TCP, 80)]].backends[ip4("192.0.2.14")]
	if got := d2.state.backends[id].cookie; got <= issued {
		t.Fatalf("backend created after adopt got cookie %d, not above %d handed out before", got, issued)
	}
	if err := d2.Remove(); err != nil {
		t.Fatal(err)
	}
}
