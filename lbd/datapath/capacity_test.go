package datapath

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func capBackends(n int, first byte) []Backend {
	var bs []Backend
	for i := range n {
		bs = append(bs, Backend{Addr: ip4(fmt.Sprintf("192.0.2.%d", int(first)+i)), MAC: beMAC(i + 1), Weight: 1, State: Up})
	}
	return bs
}

// TestKeysAtLimitExchange: a configuration at the service key limit that
// exchanges a port applies (its leaving key goes first); before, the new
// key was written first and the kernel refused it ("argument list too
// long"), on every retry.
func TestKeysAtLimitExchange(t *testing.T) {
	d := mustOpen(t, Options{MaxServiceKeys: 4, MaglevTableSize: 251})
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{1, 2, 3, 4}, Backends: capBackends(1, 11)}
	mustApply(t, d, svc)
	svc.Ports = []uint16{1, 2, 3, 5}
	if err := d.Apply([]Service{svc}); err != nil {
		t.Fatalf("exchange a port at the key limit: %v", err)
	}
	var (
		k     bpfLbServiceKey
		v     bpfLbService
		ports []uint16
	)
	for it := d.objs.LbServices.Iterate(); it.Next(&k, &v); {
		ports = append(ports, k.Port>>8|k.Port<<8)
	}
	slices.Sort(ports)
	if !slices.Equal(ports, svc.Ports) {
		t.Errorf("service keys for ports %v, want %v", ports, svc.Ports)
	}
}

// TestFitsBackends: a change that keeps every backend id in use and needs
// new ones beyond the map is refused by Fits (and by Apply) with
// ErrCapacity and what to do; the same change in two steps applies.
func TestFitsBackends(t *testing.T) {
	d := mustOpen(t, Options{MaxBackends: 5, MaglevTableSize: 251}) // ids 1-4
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: capBackends(4, 11)}
	mustApply(t, d, svc)
	next := svc
	next.Backends = append(capBackends(3, 11), capBackends(1, 20)...) // .14 leaves, .20 comes
	err := d.Fits([]Service{next})
	if !errors.Is(err, ErrCapacity) || !strings.Contains(err.Error(), "4 backends in use and 1 new need 5 backend ids at once, the data plane has 4") ||
		!strings.Contains(err.Error(), "two steps") {
		t.Fatalf("Fits = %v; want ErrCapacity naming 4 in use, 1 new, 5 needed, 4 there, and the two steps", err)
	}
	if err := d.Apply([]Service{next}); !errors.Is(err, ErrCapacity) {
		t.Fatalf("Apply = %v; want ErrCapacity", err)
	}
	first := svc
	first.Backends = capBackends(3, 11)
	for _, step := range []Service{first, next} {
		if err := d.Fits([]Service{step}); err != nil {
			t.Fatalf("Fits(%d backends): %v", len(step.Backends), err)
		}
		mustApply(t, d, step)
	}
	other := Service{Name: "dns", VIP: ip4("192.0.2.53"), Proto: UDP, Ports: []uint16{53}, Backends: capBackends(1, 30)}
	if err := d.Fits([]Service{next, other}); !errors.Is(err, ErrCapacity) {
		t.Fatalf("Fits with a new service of one more backend = %v; want ErrCapacity", err)
	}
}
