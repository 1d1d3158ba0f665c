package datapath

import (
	"bytes"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

// requirePrivileged skips without root/BPF, except under CI=true where a
// missing capability is a failure.
func requirePrivileged(tb testing.TB) { tb.Helper(); nettest.RequireBPF(tb) }

var (
	ifMAC = mustMAC("02:00:00:00:00:01")
	// hostMAC is the destination of test frames: BPF_PROG_TEST_RUN runs on
	// the loopback device, whose address is all zeros, and eth_type_trans
	// marks a frame for any other MAC PACKET_OTHERHOST (not ours).
	hostMAC = mustMAC("00:00:00:00:00:00")
	cliMAC  = mustMAC("02:00:00:00:00:02")
	testLog = (*testing.T).Logf
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func beMAC(i int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xbe, 0, 0, byte(i >> 8), byte(i)}
}

// mustOpen loads an unpinned data plane with small tables.
func mustOpen(tb testing.TB, opts Options) *Datapath {
	tb.Helper()
	requirePrivileged(tb)
	if opts.InterfaceMAC == nil && opts.Interface == "" {
		opts.InterfaceMAC = ifMAC
	}
	if opts.MaglevTableSize == 0 {
		opts.MaglevTableSize = 251
	}
	if opts.ConntrackSize == 0 {
		opts.ConntrackSize = 4096
	}
	if opts.MaxServices == 0 {
		opts.MaxServices = 64
	}
	if opts.MaxBackends == 0 {
		opts.MaxBackends = 1024
	}
	d, err := Open(opts, nil)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

func mustApply(tb testing.TB, d *Datapath, svcs ...Service) {
	tb.Helper()
	if err := d.Apply(svcs); err != nil {
		tb.Fatalf("apply: %v", err)
	}
}

// run feeds frame to the program once and returns verdict and output.
func run(tb testing.TB, d *Datapath, frame []byte) (int, []byte) {
	tb.Helper()
	opts := runOpts(frame, make([]byte, len(frame)+256))
	ret, err := d.Program().Run(opts)
	if err != nil {
		tb.Fatalf("run program: %v", err)
	}
	return int(int32(ret)), opts.DataOut
}

// pkt describes a frame for build.
type pkt struct {
	src, dst     netip.AddrPort
	proto        Proto
	syn, ack     bool
	fin, rst     bool
	vlan         uint16 // 0: untagged
	payload      []byte
	ipv4Options  bool
	fragOffset   uint16 // IPv4: in 8-byte units; IPv6: adds a fragment header
	moreFrags    bool
	fragID       uint32 // IPv4 id (16 bits) or IPv6 fragment id; 0: 7
	v6ExtHeaders bool   // hop-by-hop + destination options before L4
}

func ip4(s string) netip.Addr    { return netip.MustParseAddr(s) }
func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func build(tb testing.TB, p pkt) []byte {
	tb.Helper()
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: cliMAC, DstMAC: hostMAC}
	ls = append(ls, eth)
	etype := layers.EthernetTypeIPv4
	if p.dst.Addr().Is6() {
		etype = layers.EthernetTypeIPv6
	}
	if p.vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: p.vlan, Type: etype})
	} else {
		eth.EthernetType = etype
	}
	l4proto := layers.IPProtocol(p.proto)
	var netl gopacket.NetworkLayer
	if etype == layers.EthernetTypeIPv4 {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: l4proto, SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice(),
			FragOffset: p.fragOffset, Id: uint16(p.id())}
		if p.moreFrags {
			ip.Flags = layers.IPv4MoreFragments
		}
		if p.ipv4Options {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}} // NOPs, EOL
		}
		ls, netl = append(ls, ip), ip
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: l4proto, SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice()}
		ls, netl = append(ls, ip), ip
		if p.v6ExtHeaders || p.fragOffset != 0 || p.moreFrags {
			ip.NextHeader = layers.IPProtocolIPv6HopByHop
			ls = append(ls, gopacket.Payload(v6ext(p, l4proto)))
		}
	}
	if p.fragOffset == 0 {
		switch p.proto {
		case TCP:
			t := &layers.TCP{SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(p.dst.Port()), SYN: p.syn, ACK: p.ack, FIN: p.fin, RST: p.rst, Window: 1024}
			t.SetNetworkLayerForChecksum(netl)
			ls = append(ls, t)
		case UDP:
			u := &layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
			u.SetNetworkLayerForChecksum(netl)
			ls = append(ls, u)
		}
	}
	ls = append(ls, gopacket.Payload(append([]byte("dsrlb"), p.payload...)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("build frame: %v", err)
	}
	return bytes.Clone(buf.Bytes())
}

func (p pkt) id() uint32 {
	if p.fragID == 0 {
		return 7
	}
	return p.fragID
}

// v6ext returns a hop-by-hop header, a destination options header and,
// for fragments, a fragment header, chained to l4.
func v6ext(p pkt, l4 layers.IPProtocol) []byte {
	next := byte(l4)
	var frag []byte
	if p.fragOffset != 0 || p.moreFrags {
		fo := p.fragOffset << 3
		if p.moreFrags {
			fo |= 1
		}
		id := p.id()
		frag = []byte{next, 0, byte(fo >> 8), byte(fo), byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
		next = 44
	}
	dst := []byte{next, 0, 1, 4, 0, 0, 0, 0} // PadN option
	hbh := []byte{60, 0, 1, 4, 0, 0, 0, 0}
	return append(append(hbh, dst...), frag...)
}

// rewritten is frame with the MACs a redirect to mac writes.
func rewritten(frame []byte, mac net.HardwareAddr) []byte {
	out := bytes.Clone(frame)
	copy(out[0:6], mac)
	copy(out[6:12], ifMAC)
	return out
}

var _ = testLog

func runOpts(frame, out []byte) *ebpf.RunOptions {
	return &ebpf.RunOptions{Data: frame, DataOut: out}
}

// onOneCPU keeps the test's goroutine on one thread bound to one CPU (the
// first it may use), until the test ends: BPF_PROG_TEST_RUN runs the program on the
// calling CPU, and the flow cache is per CPU, so a test of what one CPU's
// cache holds must not migrate between runs.
func onOneCPU(t testing.TB) {
	t.Helper()
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !old.IsSet(cpu) {
		cpu++
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.SchedSetaffinity(0, &old); err != nil {
			t.Error(err)
		}
		runtime.UnlockOSThread()
	})
}

// flowsOn returns the active and inactive flows of each backend of the
// first service, in the order Stats lists them.
func flowsOn(t *testing.T, d *Datapath) (active, inactive []uint64) {
	t.Helper()
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ActiveFlows(&st); err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Services[0].Backends {
		active, inactive = append(active, b.ActiveFlows), append(inactive, b.InactiveFlows)
	}
	return active, inactive
}
