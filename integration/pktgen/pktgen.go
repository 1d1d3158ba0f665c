// Package pktgen is a packet generator for measuring a balancer's tc
// program while its CPU is busy: bpf/bench/pktgen.c's pktgen_tx, run by
// BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) on a
// client's veth, transmits TCP frames to a VIP as fast as the path behind it
// takes them, through the real kernel: veth, bridge, the balancer's tc
// ingress, its redirect, a backend's ingress. wrk's load leaves the CPU idle
// between packets; this one does not.
//
// Its parts: Gen (the frames), Pass (the XDP program the veth's far end
// needs to receive XDP frames) and Drop (a backend's tc ingress that counts
// and drops the generator's frames, so that a backend spends nothing on
// them). Frames come only from a /24 of a documentation range, and every
// run is bounded in frames and time.
package pktgen

//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel -type pktgen_state -cflags "-O2 -g -Wall -Werror -mcpu=v3 -nostdinc -isystem ../../bpf/include" pktgen ../../bpf/bench/pktgen.c

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// Mix is the traffic a generator sends.
type Mix uint32

const (
	// Established cycles over Config.Flows flows, Config.Burst frames of a
	// flow in a row: each flow's SYN first, ACKs after.
	Established Mix = iota
	// Connections opens a new connection every five frames: SYN, ACK,
	// PSH|ACK, FIN|ACK, ACK.
	Connections
)

func (m Mix) String() string {
	if m == Connections {
		return "connections"
	}
	return "established"
}

// ParseMix reads a Mix by its name.
func ParseMix(s string) (Mix, error) {
	for _, m := range []Mix{Established, Connections} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown mix %q: want established or connections", s)
}

// MaxFlows is the most flows Established cycles over (256 sources × 64,000
// ports).
const MaxFlows = 256 * 64000

// MaxBurstFrames bounds Config.Burst: a TCP sender's window of segments.
const MaxBurstFrames = 64

// Config is what a generator sends.
type Config struct {
	Mix   Mix
	Flows uint32 // Established: flows cycled over, 1..MaxFlows
	Burst uint32 // Established: frames of a flow in a row, 1..MaxBurstFrames (0: 1)
	// Sources is the /24 the frames come from: a documentation range.
	Sources netip.Prefix
	VIP     netip.Addr // IPv4 destination
	Port    uint16     // TCP destination port
	Dst     net.HardwareAddr
	Src     net.HardwareAddr
}

// Sources is the /24 the bench and the tests send from: a documentation
// range the integration topology uses for nothing else, so that a
// backend's Drop matches the generator's frames only.
var Sources = netip.MustParsePrefix("203.0.113.0/24")

var docRanges = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
}

func (c Config) check() error {
	switch {
	case c.Mix != Established && c.Mix != Connections:
		return fmt.Errorf("mix %d: want established or connections", c.Mix)
	case c.Mix == Established && (c.Flows < 1 || c.Flows > MaxFlows):
		return fmt.Errorf("%d flows: want 1..%d", c.Flows, MaxFlows)
	case c.Burst > MaxBurstFrames:
		return fmt.Errorf("bursts of %d frames: want 1..%d", c.Burst, MaxBurstFrames)
	case !c.VIP.Is4() || c.Port == 0:
		return fmt.Errorf("destination %s:%d: want an IPv4 address and a port", c.VIP, c.Port)
	case len(c.Dst) != 6 || len(c.Src) != 6:
		return fmt.Errorf("MACs %s %s: want two Ethernet addresses", c.Dst, c.Src)
	}
	return checkSources(c.Sources)
}

// checkSources accepts a /24 of the IPv4 documentation ranges only.
func checkSources(p netip.Prefix) error {
	for _, r := range docRanges {
		if p.Bits() == 24 && p.Addr() == r.Addr() {
			return nil
		}
	}
	return fmt.Errorf("sources %s: want one of the IPv4 documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)", p)
}

// Gen is a loaded generator.
type Gen struct {
	prog   *ebpf.Program
	seq    *ebpf.Map // pktgen_state
	frame  []byte
	mix    Mix
	flows  uint32
	burst  uint32
	blocks uint32 // Established: blocks of flows opened (Open)
}

// Load loads pktgen_tx for c. The caller closes it.
func Load(c Config) (*Gen, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("pktgen: %w", err)
	}
	spec, err := loadPktgen()
	if err != nil {
		return nil, fmt.Errorf("pktgen: %w", err)
	}
	var macs [12]byte
	copy(macs[:6], c.Dst)
	copy(macs[6:], c.Src)
	flows, burst := max(c.Flows, 1), max(c.Burst, 1)
	for name, v := range map[string]any{
		pktgenVarPktgenMix: uint32(c.Mix), pktgenVarPktgenFlows: flows, pktgenVarPktgenBurst: burst,
		pktgenVarPktgenSrcNet: c.Sources.Addr().As4(), pktgenVarPktgenMacs: macs,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("pktgen: set %s: %w", name, err)
		}
	}
	var objs struct {
		Prog *ebpf.Program `ebpf:"pktgen_tx"`
		Seq  *ebpf.Map     `ebpf:"pktgen_seq"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("pktgen: load pktgen_tx: %w", err)
	}
	frame, err := template(c)
	if err != nil {
		objs.Prog.Close()
		objs.Seq.Close()
		return nil, err
	}
	return &Gen{prog: objs.Prog, seq: objs.Seq, frame: frame, mix: c.Mix, flows: flows, burst: burst}, nil
}

// template is the frame pktgen_tx rewrites: Ethernet, IPv4 without
// options (DF, TTL 64), TCP without options, padded to 60 bytes.
func template(c Config) ([]byte, error) {
	eth := &layers.Ethernet{SrcMAC: c.Src, DstMAC: c.Dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP,
		SrcIP: c.Sources.Addr().AsSlice(), DstIP: c.VIP.AsSlice()}
	tcp := &layers.TCP{SrcPort: 1024, DstPort: layers.TCPPort(c.Port), Seq: 1, Ack: 1, ACK: true, Window: 65535}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, fmt.Errorf("pktgen: frame: %w", err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		return nil, fmt.Errorf("pktgen: frame: %w", err)
	}
	frame := buf.Bytes()
	for len(frame) < 60 {
		frame = append(frame, 0)
	}
	return frame, nil
}

// Reset starts the sequence again from its first frame, flow 0.
func (g *Gen) Reset() error { return g.put(pktgenPktgenState{}) }

func (g *Gen) put(st pktgenPktgenState) error {
	if err := g.seq.Put(uint32(0), &st); err != nil {
		return fmt.Errorf("pktgen: set state: %w", err)
	}
	return nil
}

func (g *Gen) state() (pktgenPktgenState, error) {
	var st pktgenPktgenState
	if err := g.seq.Lookup(uint32(0), &st); err != nil {
		return st, fmt.Errorf("pktgen: read state: %w", err)
	}
	return st, nil
}

// Sent is the sequence number of the next frame: how many frames
// pktgen_tx has produced since it was loaded or last Reset, unless Open
// moved it.
func (g *Gen) Sent() (uint64, error) {
	st, err := g.state()
	return st.Seq, err
}

// Open readies the next measured run. Established: a new block of Flows
// flows, not used by any earlier run (until 16 million flows wrap), each
// opened with its SYN and its ACK in turn, from a thread do locks inside
// the client's namespace, pinned to cpu; the following Run sends only the
// block's ACKs. Connections: nothing (its sequence never repeats a
// connection). It returns the frames it sent.
func (g *Gen) Open(do func(func() error) error, ifindex, cpu int) (uint64, error) {
	if g.mix != Established {
		return 0, nil
	}
	base := uint32(uint64(g.blocks) * uint64(g.flows) % MaxFlows)
	g.blocks++
	if err := g.put(pktgenPktgenState{Base: base, Handshake: 1}); err != nil {
		return 0, err
	}
	err := onCPU(do, cpu, func() error {
		for left := 2 * uint64(g.flows); left > 0; {
			n := uint32(min(left, MaxRunFrames))
			if err := g.Send(ifindex, n); err != nil {
				return err
			}
			left -= uint64(n)
		}
		return nil
	})
	st, serr := g.state()
	if err = errors.Join(err, serr); err != nil {
		return st.Seq, err
	}
	// Past the first pass: every frame of the next run is an ACK.
	return st.Seq, g.put(pktgenPktgenState{Seq: uint64(g.flows) * uint64(g.burst), Base: base})
}

// xdpMD is struct xdp_md, the context of an XDP test run.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// MaxRunFrames bounds the frames of one Send.
const MaxRunFrames = 1 << 22

// Send transmits n frames (1..MaxRunFrames) out of interface ifindex of
// the calling thread's network namespace, in batches of 64, in one test
// run. Run it on a thread locked inside the namespace, pinned to one CPU
// (Run does both). A signal that interrupts the run makes cilium/ebpf run
// it again from the start, so more than n frames may go out: Sent counts
// them.
func (g *Gen) Send(ifindex int, n uint32) error {
	if n < 1 || n > MaxRunFrames {
		return fmt.Errorf("pktgen: send %d frames: want 1..%d", n, MaxRunFrames)
	}
	_, err := g.prog.Run(&ebpf.RunOptions{
		Data:      g.frame,
		Repeat:    n,
		Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		Context:   xdpMD{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(ifindex)},
		BatchSize: 64,
	})
	if err != nil {
		return fmt.Errorf("pktgen: live-frames run on ifindex %d: %w", ifindex, err)
	}
	return nil
}

// Run sends test runs of n frames each until d has passed or ctx ends,
// from a thread that do must lock inside the client's namespace
// (netnsdo.Do), pinned to cpu meanwhile so that every frame takes the path
// on one CPU. The sequence goes on from where the last run left it (a
// connection is not replayed by the next cell); it returns the frames this
// run sent.
func (g *Gen) Run(ctx context.Context, do func(func() error) error, ifindex, cpu int, n uint32, d time.Duration) (uint64, error) {
	before, err := g.Sent()
	if err != nil {
		return 0, err
	}
	err = onCPU(do, cpu, func() error {
		for end := time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil; {
			if err := g.Send(ifindex, n); err != nil {
				return err
			}
		}
		return ctx.Err()
	})
	after, serr := g.Sent()
	return after - before, errors.Join(err, serr)
}

// onCPU runs fn on a thread do locks (inside a namespace), pinned to cpu
// meanwhile.
func onCPU(do func(func() error) error, cpu int, fn func() error) error {
	return do(func() (err error) {
		var prev unix.CPUSet
		if err := unix.SchedGetaffinity(0, &prev); err != nil {
			return fmt.Errorf("pktgen: read CPU affinity: %w", err)
		}
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return fmt.Errorf("pktgen: pin to CPU %d: %w", cpu, err)
		}
		defer func() {
			if rerr := unix.SchedSetaffinity(0, &prev); rerr != nil {
				err = errors.Join(err, fmt.Errorf("pktgen: restore CPU affinity: %w", rerr))
			}
		}()
		return fn()
	})
}

// Close releases the generator.
func (g *Gen) Close() error {
	return errors.Join(g.prog.Close(), g.seq.Close())
}

// Pass is pktgen_pass attached to an interface.
type Pass struct {
	prog *ebpf.Program
	l    link.Link
}

// AttachPass attaches pktgen_pass to ifindex (in the calling thread's
// namespace): the veth peer of the generator's interface needs an XDP
// program to receive the frames it transmits.
func AttachPass(ifindex int) (*Pass, error) {
	var objs struct {
		Prog *ebpf.Program `ebpf:"pktgen_pass"`
	}
	if err := loadPktgenObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("pktgen: load pktgen_pass: %w", err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: objs.Prog, Interface: ifindex})
	if err != nil {
		objs.Prog.Close()
		return nil, fmt.Errorf("pktgen: attach pktgen_pass to ifindex %d: %w", ifindex, err)
	}
	return &Pass{prog: objs.Prog, l: l}, nil
}

// Close detaches and releases it.
func (p *Pass) Close() error { return errors.Join(p.l.Close(), p.prog.Close()) }

// Drop is pktgen_drop attached to a backend's ingress.
type Drop struct {
	prog    *ebpf.Program
	dropped *ebpf.Map
	l       link.Link
}

// AttachDrop attaches pktgen_drop with tcx to the ingress of ifindex (in
// the calling thread's namespace), dropping IPv4 frames from sources.
func AttachDrop(ifindex int, sources netip.Prefix) (*Drop, error) {
	if err := checkSources(sources); err != nil {
		return nil, fmt.Errorf("pktgen: %w", err)
	}
	spec, err := loadPktgen()
	if err != nil {
		return nil, fmt.Errorf("pktgen: %w", err)
	}
	if err := spec.Variables[pktgenVarPktgenSrcNet].Set(sources.Addr().As4()); err != nil {
		return nil, fmt.Errorf("pktgen: set sources: %w", err)
	}
	var objs struct {
		Prog    *ebpf.Program `ebpf:"pktgen_drop"`
		Dropped *ebpf.Map     `ebpf:"pktgen_dropped"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("pktgen: load pktgen_drop: %w", err)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: objs.Prog, Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
	if err != nil {
		objs.Prog.Close()
		objs.Dropped.Close()
		return nil, fmt.Errorf("pktgen: attach pktgen_drop to ifindex %d: %w", ifindex, err)
	}
	return &Drop{prog: objs.Prog, dropped: objs.Dropped, l: l}, nil
}

// Dropped is how many frames it has dropped, over every CPU.
func (d *Drop) Dropped() (uint64, error) {
	var per []uint64
	if err := d.dropped.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("pktgen: read drop count: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Close detaches and releases it.
func (d *Drop) Close() error {
	return errors.Join(d.l.Close(), d.prog.Close(), d.dropped.Close())
}
