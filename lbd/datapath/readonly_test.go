package datapath

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReaderCannotWrite: a Reader sees what the daemon's Datapath wrote,
// takes the timeouts from the pinned lb_cfg (not from any file), and holds
// only descriptors the kernel refuses writes through.
func TestReaderCannotWrite(t *testing.T) {
	pin := testPinPath(t)
	d := mustOpen(t, Options{PinPath: pin, TCPTimeout: 15 * time.Minute})
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: []Backend{
		{Name: "a", Addr: ip4("192.0.2.11"), MAC: beMAC(1), Weight: 1, State: Up},
		{Name: "b", Addr: ip4("192.0.2.12"), MAC: beMAC(2), Weight: 1, State: Up},
	}}
	mustApply(t, d, svc)
	t.Cleanup(func() { d.Remove() })

	r, err := OpenReadOnly(pin)
	if err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	defer r.Close()
	if got := r.TCPTimeout(); got != 15*time.Minute {
		t.Errorf("reader TCP timeout %v, want the pinned 15m", got)
	}
	st, err := r.Stats()
	if err != nil || len(st.Services) != 1 || len(st.Services[0].Backends) != 2 {
		t.Fatalf("reader stats: %+v %v", st, err)
	}
	info, err := r.LookupFlow(Flow{Proto: TCP, Src: ap("198.51.100.7:40000"), Dst: ap("192.0.2.10:80")})
	if err != nil || info.Backend == "" {
		t.Fatalf("reader lookup: %+v %v", info, err)
	}
	if err := r.d.objs.LbCfg.Put(uint32(0), &bpfLbConfig{}); !errors.Is(err, unix.EPERM) {
		t.Errorf("write through the reader's lb_cfg: %v, want EPERM", err)
	}
	if err := r.d.objs.LbServices.Delete(serviceKey(svc.VIP, TCP, 80)); !errors.Is(err, unix.EPERM) {
		t.Errorf("delete through the reader's lb_services: %v, want EPERM", err)
	}
	if _, err := OpenReadOnly(pin + "-none"); !errors.Is(err, ErrNotPinned) {
		t.Errorf("open of a missing pin path: %v, want ErrNotPinned", err)
	}
}
