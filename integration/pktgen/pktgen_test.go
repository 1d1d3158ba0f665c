package pktgen

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netorder"
	"github.com/dsrlb/dsrlb/internal/nettest"
)

var (
	testSources = Sources
	testVIP     = netip.MustParseAddr("192.0.2.10")
	testDst     = net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x53, 0x02}
	testSrc     = net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}
)

// wire is a generator's namespace and a receiver's joined by a veth:
// gen0 — recv0, recv0 running pktgen_pass.
type wire struct {
	gen, recv       *nettest.NS
	genIdx, recvIdx int
}

func newWire(t *testing.T) wire {
	t.Helper()
	nettest.RequireBPF(t)
	w := wire{gen: nettest.New(t), recv: nettest.New(t)}
	w.gen.Run(t, "ip", "link", "add", "gen0", "type", "veth", "peer", "name", "recv0", "netns", w.recv.Name)
	w.gen.Run(t, "ip", "link", "set", "gen0", "up")
	w.recv.Run(t, "ip", "link", "set", "recv0", "up")
	for _, side := range []struct {
		ns  *nettest.NS
		dev string
		idx *int
	}{{w.gen, "gen0", &w.genIdx}, {w.recv, "recv0", &w.recvIdx}} {
		l, err := side.ns.H.LinkByName(side.dev)
		if err != nil {
			t.Fatal(err)
		}
		*side.idx = l.Attrs().Index
	}
	var pass *Pass
	if err := w.recv.Do(func() (err error) { pass, err = AttachPass(w.recvIdx); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pass.Close() })
	return w
}

func load(t *testing.T, c Config) *Gen {
	t.Helper()
	if !c.Sources.IsValid() {
		c.Sources = testSources
	}
	c.VIP, c.Port, c.Dst, c.Src = testVIP, 80, testDst, testSrc
	g, err := Load(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// capture reads the IPv4 frames recv0 receives until it has n or 5 s pass.
func (w wire) capture(t *testing.T, n int, send func()) [][]byte {
	t.Helper()
	var fd int
	err := w.recv.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(netorder.Htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: netorder.Htons(unix.ETH_P_IP), Ifindex: w.recvIdx})
	})
	if err != nil {
		t.Fatalf("packet socket on recv0: %v", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	send()
	var frames [][]byte
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(5 * time.Second); len(frames) < n && time.Now().Before(deadline); {
		k, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // the receive timeout: look at the deadline again
		}
		frames = append(frames, append([]byte(nil), buf[:k]...))
	}
	return frames
}

func (w wire) send(t *testing.T, g *Gen, n uint32) {
	t.Helper()
	if err := g.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := w.gen.Do(func() error { return g.Send(w.genIdx, n) }); err != nil {
		t.Fatal(err)
	}
}

type seen struct {
	src   netip.Addr
	sport uint16
	flags string
}

// decode checks what every generated frame must hold (MACs, destination,
// a valid IPv4 checksum) and returns the flow and flags it carries.
func decode(t *testing.T, frame []byte) seen {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if eth == nil || ip == nil || tcp == nil {
		t.Fatalf("frame is not Ethernet/IPv4/TCP: %x", frame)
	}
	if eth.DstMAC.String() != testDst.String() || eth.SrcMAC.String() != testSrc.String() {
		t.Errorf("MACs %s -> %s, want %s -> %s", eth.SrcMAC, eth.DstMAC, testSrc, testDst)
	}
	if dst, _ := netip.AddrFromSlice(ip.DstIP); dst != testVIP || tcp.DstPort != 80 {
		t.Errorf("destination %s:%d, want %s:80", ip.DstIP, tcp.DstPort, testVIP)
	}
	var sum uint32
	for i := 14; i < 34; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(frame[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Errorf("IPv4 header checksum %#04x does not verify (sum %#x)", ip.Checksum, sum)
	}
	src, _ := netip.AddrFromSlice(ip.SrcIP)
	flags := ""
	for _, f := range []struct {
		on   bool
		name string
	}{{tcp.SYN, "S"}, {tcp.PSH, "P"}, {tcp.FIN, "F"}, {tcp.ACK, "."}} {
		if f.on {
			flags += f.name
		}
	}
	return seen{src: src, sport: uint16(tcp.SrcPort), flags: flags}
}

// TestEstablishedMix: each flow's SYN first, then ACKs in turn, flows
// numbered into source addresses and ports as documented.
func TestEstablishedMix(t *testing.T) {
	w := newWire(t)
	g := load(t, Config{Mix: Established, Flows: 64003})
	// Frames 0..64002 are the SYNs; the last three are flows 64000-64002
	// (source .1, ports 1024-1026). Then ACKs of flows 0 and 1.
	// A packet socket drops what it cannot keep up with: capture the
	// first two frames, send the next 63,996 uncaptured, capture the
	// last seven.
	first := w.capture(t, 2, func() { w.send(t, g, 2) })
	if err := w.gen.Do(func() error { return g.Send(w.genIdx, 63996) }); err != nil {
		t.Fatal(err)
	}
	last := w.capture(t, 7, func() {
		if err := w.gen.Do(func() error { return g.Send(w.genIdx, 7) }); err != nil {
			t.Fatal(err)
		}
	})
	if len(first) != 2 || len(last) != 7 {
		t.Fatalf("received %d of the first 2 and %d of the last 7 frames", len(first), len(last))
	}
	a0, a1 := netip.MustParseAddr("203.0.113.0"), netip.MustParseAddr("203.0.113.1")
	want := []seen{
		{a0, 1024, "S"}, {a0, 1025, "S"}, // frames 0, 1
		{a0, 65022, "S"}, {a0, 65023, "S"}, {a1, 1024, "S"}, {a1, 1025, "S"}, {a1, 1026, "S"}, // 63998..64002: the last SYNs
		{a0, 1024, "."}, {a0, 1025, "."}, // 64003, 64004: ACKs of flows 0 and 1
	}
	for i, f := range append(first, last...) {
		if got := decode(t, f); got != want[i] {
			t.Errorf("frame %d of the captured: %+v, want %+v", i, got, want[i])
		}
	}
	if sent, err := g.Sent(); err != nil || sent != 64005 {
		t.Errorf("Sent() = %d, %v; want 64005", sent, err)
	}
}

// TestEstablishedBurst: a flow's frames in a row, its SYN first.
func TestEstablishedBurst(t *testing.T) {
	w := newWire(t)
	g := load(t, Config{Mix: Established, Flows: 2, Burst: 3})
	frames := w.capture(t, 9, func() { w.send(t, g, 9) })
	if len(frames) != 9 {
		t.Fatalf("received %d of 9 frames", len(frames))
	}
	a := netip.MustParseAddr("203.0.113.0")
	want := []seen{{a, 1024, "S"}, {a, 1024, "."}, {a, 1024, "."}, {a, 1025, "S"}, {a, 1025, "."}, {a, 1025, "."},
		{a, 1024, "."}, {a, 1024, "."}, {a, 1024, "."}}
	for i, f := range frames {
		if got := decode(t, f); got != want[i] {
			t.Errorf("frame %d: %+v, want %+v", i, got, want[i])
		}
	}
}

// TestEstablishedOpen: Open opens a new block of flows with each flow's
// SYN and ACK, and the next frames are that block's ACKs only.
func TestEstablishedOpen(t *testing.T) {
	w := newWire(t)
	g := load(t, Config{Mix: Established, Flows: 2, Burst: 3})
	a := netip.MustParseAddr("203.0.113.0")
	for block, base := range []uint16{1024, 1026} {
		var opened uint64
		frames := w.capture(t, 10, func() {
			var err error
			if opened, err = g.Open(w.gen.Do, w.genIdx, 0); err != nil {
				t.Fatal(err)
			}
			if err := w.gen.Do(func() error { return g.Send(w.genIdx, 6) }); err != nil {
				t.Fatal(err)
			}
		})
		if opened != 4 || len(frames) != 10 {
			t.Fatalf("block %d: Open sent %d frames, want 4; received %d of 10", block, opened, len(frames))
		}
		want := []seen{{a, base, "S"}, {a, base, "."}, {a, base + 1, "S"}, {a, base + 1, "."},
			{a, base, "."}, {a, base, "."}, {a, base, "."}, {a, base + 1, "."}, {a, base + 1, "."}, {a, base + 1, "."}}
		for i, f := range frames {
			if got := decode(t, f); got != want[i] {
				t.Errorf("block %d, frame %d: %+v, want %+v", block, i, got, want[i])
			}
		}
	}
}

// TestConnectionsMix: five frames a connection, each connection on a new
// source port.
func TestConnectionsMix(t *testing.T) {
	w := newWire(t)
	g := load(t, Config{Mix: Connections})
	frames := w.capture(t, 10, func() { w.send(t, g, 10) })
	if len(frames) != 10 {
		t.Fatalf("received %d of 10 frames", len(frames))
	}
	src := netip.MustParseAddr("203.0.113.0")
	flags := []string{"S", ".", "P.", "F.", "."}
	for i, f := range frames {
		want := seen{src, uint16(1024 + i/5), flags[i%5]}
		if got := decode(t, f); got != want {
			t.Errorf("frame %d: %+v, want %+v", i, got, want)
		}
	}
}

// TestRunDropped: Run sends for its duration, bounded, and the receiver's
// pktgen_drop counts what it drops — the generator's frames only.
func TestRunDropped(t *testing.T) {
	w := newWire(t)
	g := load(t, Config{Mix: Established, Flows: 1024})
	var drop *Drop
	if err := w.recv.Do(func() (err error) { drop, err = AttachDrop(w.recvIdx, testSources); return err }); err != nil {
		t.Fatal(err)
	}
	defer drop.Close()
	sent, err := g.Run(context.Background(), w.gen.Do, w.genIdx, 0, 50000, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if sent < 50000 {
		t.Fatalf("sent %d frames in 300 ms, want at least one burst of 50,000", sent)
	}
	var dropped uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if dropped, err = drop.Dropped(); err != nil {
			t.Fatal(err)
		}
		if dropped == sent {
			break
		}
	}
	// A veth peer's ring takes 256 frames: the few a burst overruns are
	// lost before the drop program, never counted twice.
	if dropped > sent || dropped < sent*9/10 {
		t.Fatalf("pktgen_drop dropped %d of %d frames sent", dropped, sent)
	}
	t.Logf("sent %d frames, pktgen_drop dropped %d", sent, dropped)

	// Frames from another /24 continue: 100 of them, then one of the
	// generator's, which the drop counts once all 101 have passed it.
	other := load(t, Config{Mix: Established, Flows: 1, Sources: netip.MustParsePrefix("198.51.100.0/24")})
	before, err := drop.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	w.send(t, other, 100)
	w.send(t, g, 1)
	after := before
	for deadline := time.Now().Add(5 * time.Second); after == before && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if after, err = drop.Dropped(); err != nil {
			t.Fatal(err)
		}
	}
	if after != before+1 {
		t.Errorf("pktgen_drop dropped %d frames, want only the generator's one of 101 (100 from another source)", after-before)
	}
}

// TestConfigRefused: a configuration outside what the generator may send
// is refused, with what it wants, before anything loads.
func TestConfigRefused(t *testing.T) {
	for name, c := range map[string]struct {
		change func(*Config)
		want   string
	}{
		"not a documentation range": {func(c *Config) { c.Sources = netip.MustParsePrefix("10.0.0.0/24") }, "documentation ranges"},
		"not a /24":                 {func(c *Config) { c.Sources = netip.MustParsePrefix("203.0.113.0/25") }, "documentation ranges"},
		"no flows":                  {func(c *Config) { c.Flows = 0 }, "want 1..16384000"},
		"too many flows":            {func(c *Config) { c.Flows = MaxFlows + 1 }, "want 1..16384000"},
		"bursts too long":           {func(c *Config) { c.Burst = 65 }, "want 1..64"},
		"IPv6 VIP":                  {func(c *Config) { c.VIP = netip.MustParseAddr("2001:db8::10") }, "IPv4"},
		"unknown mix":               {func(c *Config) { c.Mix = 7 }, "established or connections"},
	} {
		cfg := Config{Mix: Established, Flows: 1, Sources: testSources, VIP: testVIP, Port: 80, Dst: testDst, Src: testSrc}
		c.change(&cfg)
		if g, err := Load(cfg); err == nil {
			g.Close()
			t.Errorf("%s: loaded", name)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want it to say %q", name, err, c.want)
		}
	}
	if _, err := ParseMix("bursty"); err == nil || !strings.Contains(err.Error(), "established or connections") {
		t.Errorf("ParseMix(bursty): %v", err)
	}
}
