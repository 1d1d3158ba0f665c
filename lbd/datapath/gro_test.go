package datapath

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
)

// skbWithSegs is a __sk_buff context (192 bytes in the 6.1 UAPI) with
// gso_segs (offset 164) set, as GRO leaves it on a super-packet.
func skbWithSegs(segs uint32) []byte {
	ctx := make([]byte, 192)
	binary.LittleEndian.PutUint32(ctx[164:], segs)
	return ctx
}

func runSegs(t *testing.T, d *Datapath, frame []byte, segs uint32) int {
	t.Helper()
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256), Context: skbWithSegs(segs)}
	ret, err := d.Program().Run(opts)
	if err != nil {
		t.Fatalf("run program: %v", err)
	}
	return int(int32(ret))
}

// TestGROSuperPackets: counters count segments, and a BIG TCP super-packet
// (IP length 0) is forwarded, while the same frame without segments is
// malformed.
func TestGROSuperPackets(t *testing.T) {
	d := mustOpen(t, Options{})
	mustApply(t, d, tableServices()...)
	frame := build(t, pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.10:80"), proto: TCP, syn: true})
	if v := runSegs(t, d, frame, 5); v != VerdictRedirect {
		t.Fatalf("verdict %d", v)
	}
	st, _ := d.Stats()
	if got := st.Services[0].Counters.Packets; got != 5 {
		t.Fatalf("service packets = %d after one super-packet of 5 segments", got)
	}

	big4 := patch(patch(frame, 16, 0), 17, 0) // IPv4 total length 0
	big6 := build(t, pkt{src: ap("[2001:db8:1::1]:40000"), dst: ap("[2001:db8::10]:443"), proto: TCP, ack: true})
	big6 = patch(patch(big6, 18, 0), 19, 0) // IPv6 payload length 0
	for name, f := range map[string][]byte{"ipv4": big4, "ipv6": big6} {
		if v := runSegs(t, d, f, 3); v != VerdictRedirect {
			t.Errorf("%s BIG TCP super-packet: verdict %d, want redirect", name, v)
		}
		if v := runSegs(t, d, f, 0); v != VerdictContinue {
			t.Errorf("%s length 0 without segments: verdict %d, want continue (malformed)", name, v)
		}
	}
}
