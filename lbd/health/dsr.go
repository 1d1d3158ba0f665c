package health

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netnsdo"
)

// DSR-path checks (check.via: vip).
//
// A check must reach a backend the way client traffic does: destination
// IP the VIP, destination MAC the backend's, out of the balancer
// interface. The VIP is a local address of the balancer, so a connect() to
// it never leaves the host: the check speaks TCP itself, over one
// AF_PACKET socket bound to the interface and shared by every check. It
// sends the SYN from one of the balancer's own addresses on the interface
// and a source port in [dsrPortLo, dsrPortHi]; the socket's filter passes
// only TCP segments to those addresses and ports, and replies are handed
// to their check by destination port (each check in flight has its own).
//
// The backend answers from the VIP. To the balancer's IPv4 stack a packet
// from one of its own addresses arriving on the wire is martian and is
// dropped (accept_local=0), so the kernel neither sees nor resets the
// check's connection. IPv6 has no such rule: the stack takes the SYN-ACK,
// finds no socket and answers with a RST addressed to the VIP, which is
// local, so that RST is looped back and never reaches the backend. Either
// way the check owns its connection.

// DSROptions enable DSR-path checks for the targets that ask for them.
type DSROptions struct {
	// Interface is balancer.interface. "" disables DSR-path checks: such
	// targets fail with a reason saying so.
	Interface string
	// Neighbor returns the resolved MAC of a backend address, nil while
	// there is none (a Target's static MAC takes precedence).
	Neighbor func(netip.Addr) net.HardwareAddr
	// Netns is the namespace of the interface; nil is the current one.
	Netns *netns.NsHandle
	// Logger receives socket trouble; nil discards.
	Logger *slog.Logger
}

// addrRefresh is how often the balancer's own addresses are re-read.
const addrRefresh = 10 * time.Second

// dsrPath is the shared packet socket of DSR-path checks and the table of
// checks in flight on it. It opens the socket on first use and again after
// a failure, so missing privileges show as a check failure (and the
// backend's reason), not as a daemon that cannot start.
type dsrPath struct {
	opts DSROptions
	log  *slog.Logger

	mu      sync.Mutex
	ifi     *net.Interface
	sock    *packet.Conn
	own     []netip.Prefix // the balancer's addresses on the interface with their prefix lengths, VIPs excluded
	ownAt   time.Time
	vips    map[netip.Addr]bool
	flows   map[uint16]*dsrConn // by local port
	next    uint16              // next local port to try
	closed  bool
	readers sync.WaitGroup
}

func newDSRPath(opts DSROptions) *dsrPath {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &dsrPath{opts: opts, log: log, flows: map[uint16]*dsrConn{}, vips: map[netip.Addr]bool{}, next: dsrPortLo}
}

// setVIPs tells the path which addresses are VIPs: never a check's source,
// even when lbd put them on the interface.
func (p *dsrPath) setVIPs(vips map[netip.Addr]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.vips = vips
	p.ownAt = time.Time{} // re-pick the sources
}

// mac returns where t's frames go: its static MAC, else the resolved one.
func (p *dsrPath) mac(t Target) net.HardwareAddr {
	if t.MAC != ([6]byte{}) {
		return net.HardwareAddr(t.MAC[:])
	}
	if p.opts.Neighbor == nil {
		return nil
	}
	return p.opts.Neighbor(t.Addr.Addr())
}

// source is where a check to a backend comes from.
type source struct {
	addr   netip.Addr
	onLink bool // the backend answers addr on the segment: its prefix contains the backend, or it is link-local
}

// ready opens the socket if needed and refreshes the own addresses; it
// returns the socket, the interface and the source for backend.
func (p *dsrPath) ready(backend netip.Addr) (*packet.Conn, *net.Interface, source, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, source{}, net.ErrClosed
	}
	if p.sock == nil {
		if err := p.open(); err != nil {
			return nil, nil, source{}, err
		}
	}
	if time.Since(p.ownAt) > addrRefresh {
		if err := p.refreshOwn(); err != nil {
			return nil, nil, source{}, err
		}
	}
	src := pickSource(p.own, backend)
	if !src.addr.IsValid() {
		fam := "IPv4"
		if !backend.Unmap().Is4() {
			fam = "IPv6"
		}
		return nil, nil, source{}, fmt.Errorf("balancer has no %s address of its own on %s to send DSR-path checks from: add one, or set check.via: address", fam, p.opts.Interface)
	}
	return p.sock, p.ifi, src, nil
}

// open opens and binds the socket, with a filter that passes nothing
// until refreshOwn installs the real one.
func (p *dsrPath) open() error {
	if p.opts.Interface == "" {
		return errors.New("DSR-path checks are not set up (no balancer interface): set check.via: address")
	}
	none, _ := dsrFilter(nil)
	err := p.inNetns(func() error {
		ifi, err := net.InterfaceByName(p.opts.Interface)
		if err != nil {
			return fmt.Errorf("find interface %s: %w", p.opts.Interface, err)
		}
		sock, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: none})
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("open packet socket on %s for DSR-path checks: %w: lbd needs CAP_NET_RAW (or set check.via: address)", p.opts.Interface, err)
			}
			return fmt.Errorf("open packet socket on %s for DSR-path checks: %w", p.opts.Interface, err)
		}
		p.ifi, p.sock = ifi, sock
		return nil
	})
	if err != nil {
		return err
	}
	// Our own SYNs are not replies: the socket need not see them at all.
	if rc, err := p.sock.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		})
	}
	p.ownAt = time.Time{}
	p.readers.Add(1)
	go p.read(p.sock)
	return nil
}

// refreshOwn re-reads the interface's addresses and narrows the filter
// to them.
func (p *dsrPath) refreshOwn() error {
	var own []netip.Prefix
	err := p.inNetns(func() error {
		link, err := netlink.LinkByName(p.opts.Interface)
		if err != nil {
			return fmt.Errorf("find interface %s: %w", p.opts.Interface, err)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("list addresses of %s: %w", p.opts.Interface, err)
		}
		own = ownAddrs(addrs, p.vips)
		return nil
	})
	if err != nil {
		return err
	}
	if !slices.Equal(own, p.own) || p.ownAt.IsZero() {
		f, err := dsrFilter(prefixAddrs(own))
		if err != nil {
			return err
		}
		if err := p.sock.SetBPF(f); err != nil {
			return fmt.Errorf("filter check socket on %s: %w", p.opts.Interface, err)
		}
	}
	p.own, p.ownAt = own, time.Now()
	return nil
}

// ownAddrs keeps the addresses a check may come from, each with the
// prefix length it has on the interface (host bits kept: 192.0.2.1/24):
// global unicast ones that are not VIPs and not tentative or deprecated,
// at most maxFilterAddrs of each family, in the kernel's order. An IPv6
// segment where the balancer has only its link-local address uses that:
// the backend is on-link, so it answers a link-local address on the
// interface the SYN came in by.
func ownAddrs(addrs []netlink.Addr, vips map[netip.Addr]bool) []netip.Prefix {
	var out []netip.Prefix
	var linkLocal netip.Prefix
	n4, n6 := 0, 0
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if vips[ip] || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DEPRECATED|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		pfx := addrPrefix(ip, a.Mask)
		switch {
		case ip.Is6() && ip.IsLinkLocalUnicast() && !linkLocal.IsValid():
			linkLocal = pfx
		case !ip.IsGlobalUnicast():
		case ip.Is4() && n4 < maxFilterAddrs:
			n4++
			out = append(out, pfx)
		case ip.Is6() && n6 < maxFilterAddrs:
			n6++
			out = append(out, pfx)
		}
	}
	if n6 == 0 && linkLocal.IsValid() {
		out = append(out, linkLocal)
	}
	return out
}

// addrPrefix is ip with the length of mask. A mask that does not fit ip
// gives a host prefix: the address is still a source, only no backend is
// on-link through it.
func addrPrefix(ip netip.Addr, mask net.IPMask) netip.Prefix {
	if ones, bits := mask.Size(); bits == ip.BitLen() {
		return netip.PrefixFrom(ip, ones)
	}
	return netip.PrefixFrom(ip, ip.BitLen())
}

// prefixAddrs is the addresses of own, for the socket filter.
func prefixAddrs(own []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, len(own))
	for i, p := range own {
		out[i] = p.Addr()
	}
	return out
}

// pickSource is the own address a check to backend comes from. On an
// interface with several subnets it must be one on the backend's: from
// another, the backend's reply to it goes by its routes (its gateway,
// often) instead of straight back on the segment, and the check fails
// while client traffic, answered to the client by those same routes,
// works. So: the address whose prefix contains backend (the longest such
// prefix, then the kernel's order); else an IPv6 link-local one (answered
// on the link the SYN came by); else, off-link, the first of backend's
// family (the kernel lists the primary first).
func pickSource(own []netip.Prefix, backend netip.Addr) source {
	backend = backend.Unmap()
	var src source
	best := -2
	for _, p := range own {
		if p.Addr().Is4() != backend.Is4() {
			continue
		}
		rank := -1 // off-link
		switch {
		case p.Contains(backend):
			rank = 1 + p.Bits()
		case p.Addr().IsLinkLocalUnicast():
			rank = 0
		}
		if rank > best {
			src, best = source{addr: p.Addr(), onLink: rank >= 0}, rank
		}
	}
	return src
}

// inNetns runs fn in the path's namespace (sockets and netlink calls belong
// to the namespace of the thread that makes them).
func (p *dsrPath) inNetns(fn func() error) error {
	if p.opts.Netns == nil || !p.opts.Netns.IsOpen() {
		return fn()
	}
	return netnsdo.Do(*p.opts.Netns, fn)
}

// register gives c a free local port.
func (p *dsrPath) register(c *dsrConn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range dsrPortHi - dsrPortLo + 1 {
		port := p.next
		if p.next == dsrPortHi {
			p.next = dsrPortLo
		} else {
			p.next++
		}
		if _, used := p.flows[port]; !used {
			p.flows[port] = c
			c.local = netip.AddrPortFrom(c.local.Addr(), port)
			return nil
		}
	}
	return fmt.Errorf("no free source port for a DSR-path check: %d checks in flight", len(p.flows))
}

func (p *dsrPath) unregister(c *dsrConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.flows[c.local.Port()] == c {
		delete(p.flows, c.local.Port())
	}
}

// read hands every segment the filter passed to its check until the
// socket closes. A read error other than the close drops the socket: the
// next check opens a new one.
func (p *dsrPath) read(sock *packet.Conn) {
	defer p.readers.Done()
	buf := make([]byte, 1<<16)
	for {
		n, _, err := sock.ReadFrom(buf)
		if err != nil {
			p.mu.Lock()
			closing := p.closed || p.sock != sock
			if !closing {
				p.log.Warn("DSR-path check socket failed; reopening", "interface", p.opts.Interface, "err", err)
				p.sock = nil
			}
			flows := make([]*dsrConn, 0, len(p.flows))
			for _, c := range p.flows {
				flows = append(flows, c)
			}
			p.mu.Unlock()
			_ = sock.Close()
			for _, c := range flows {
				c.fail(fmt.Errorf("DSR-path check socket on %s failed: %w", p.opts.Interface, err))
			}
			return
		}
		s, err := parseSegment(buf[:n])
		if err != nil {
			continue
		}
		p.mu.Lock()
		c := p.flows[s.dst.Port()]
		p.mu.Unlock()
		if c != nil && c.local == s.dst && c.remote == s.src {
			c.deliver(s)
		}
	}
}

// send writes one frame to dst.
func (p *dsrPath) send(sock *packet.Conn, frame []byte, dst net.HardwareAddr) error {
	if _, err := sock.WriteTo(frame, &packet.Addr{HardwareAddr: dst}); err != nil {
		return fmt.Errorf("send DSR-path check on %s: %w", p.opts.Interface, err)
	}
	return nil
}

// close closes the socket and waits for its reader.
func (p *dsrPath) close() {
	p.mu.Lock()
	p.closed = true
	sock := p.sock
	p.sock = nil
	p.mu.Unlock()
	if sock != nil {
		_ = sock.Close()
	}
	p.readers.Wait()
}
