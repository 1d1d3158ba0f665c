package topo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netorder"
)

// packetSocket opens an AF_PACKET socket for proto bound to dev, in the
// calling thread's namespace (call it inside NS.Do).
func packetSocket(dev string, proto uint16, rcvTimeout time.Duration) (int, int, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return -1, 0, fmt.Errorf("find %s: %w", dev, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(netorder.Htons(proto)))
	if err != nil {
		return -1, 0, fmt.Errorf("open packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: netorder.Htons(proto), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind packet socket to %s: %w", dev, err)
	}
	tv := unix.NsecToTimeval(rcvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("set receive timeout: %w", err)
	}
	return fd, ifi.Index, nil
}

// ARPProbe broadcasts "who-has target tell <from's address>" from from's
// segment interface (three times, 100ms apart) and returns every distinct
// MAC that answered for target within wait, sorted. Exactly one — the
// balancer's — is the DSR invariant.
func ARPProbe(from *Host, target netip.Addr, wait time.Duration) ([]net.HardwareAddr, error) {
	if !target.Is4() || !from.IPv4.IsValid() {
		return nil, fmt.Errorf("arp probe: IPv4 only (target %s)", target)
	}
	var macs []net.HardwareAddr
	err := from.NS.Do(func() error {
		fd, idx, err := packetSocket(from.Dev, unix.ETH_P_ARP, 20*time.Millisecond)
		if err != nil {
			return fmt.Errorf("arp probe: %w", err)
		}
		defer unix.Close(fd)
		req := make([]byte, 42)
		copy(req[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(req[6:12], from.MAC)
		binary.BigEndian.PutUint16(req[12:], unix.ETH_P_ARP)
		binary.BigEndian.PutUint16(req[14:], 1)      // Ethernet
		binary.BigEndian.PutUint16(req[16:], 0x0800) // IPv4
		req[18], req[19] = 6, 4
		binary.BigEndian.PutUint16(req[20:], 1) // request
		copy(req[22:28], from.MAC)
		copy(req[28:32], from.IPv4.AsSlice())
		copy(req[38:42], target.AsSlice())
		to := &unix.SockaddrLinklayer{Protocol: netorder.Htons(unix.ETH_P_ARP), Ifindex: idx, Halen: 6,
			Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		seen := map[string]net.HardwareAddr{}
		buf := make([]byte, 1600)
		start := time.Now()
		for sent := 0; time.Since(start) < wait; {
			if sent < 3 && time.Since(start) >= time.Duration(sent)*100*time.Millisecond {
				if err := unix.Sendto(fd, req, 0, to); err != nil {
					return fmt.Errorf("arp probe: send: %w", err)
				}
				sent++
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("arp probe: receive: %w", err)
			}
			f := buf[:n]
			if n < 42 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_ARP || binary.BigEndian.Uint16(f[20:]) != 2 {
				continue
			}
			if bytes.Equal(f[28:32], target.AsSlice()) {
				m := net.HardwareAddr(slices.Clone(f[22:28]))
				seen[m.String()] = m
			}
		}
		for _, m := range seen {
			macs = append(macs, m)
		}
		slices.SortFunc(macs, func(a, b net.HardwareAddr) int { return bytes.Compare(a, b) })
		return nil
	})
	return macs, err
}

// Counter counts the frames received on one interface that match a filter.
type Counter struct {
	fd   int
	n    atomic.Int64
	stop atomic.Bool
	wg   sync.WaitGroup
}

// CountFrames starts counting frames arriving on dev in h's namespace
// (outgoing frames are ignored) for which match is true.
func CountFrames(h *Host, dev string, match func(frame []byte) bool) (*Counter, error) {
	c := &Counter{fd: -1}
	err := h.NS.Do(func() error {
		fd, _, err := packetSocket(dev, unix.ETH_P_ALL, 50*time.Millisecond)
		c.fd = fd
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("count frames on %s in %s: %w", dev, h.NS.Name, err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 65536)
		for !c.stop.Load() {
			n, from, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if match(buf[:n]) {
				c.n.Add(1)
			}
		}
	}()
	return c, nil
}

// Count so far.
func (c *Counter) Count() int64 { return c.n.Load() }

// WaitCount waits until at least n frames were counted or d passes, and
// returns the count.
func (c *Counter) WaitCount(n int64, d time.Duration) int64 {
	for deadline := time.Now().Add(d); c.Count() < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	return c.Count()
}

// Stop ends counting and returns the total.
func (c *Counter) Stop() int64 {
	if c.stop.CompareAndSwap(false, true) {
		c.wg.Wait()
		unix.Close(c.fd)
	}
	return c.n.Load()
}

// FromAddrPort matches TCP or UDP frames (optionally VLAN-tagged, IPv4 or
// IPv6 without extension headers) whose source is src:port: replies from a
// VIP.
func FromAddrPort(src netip.Addr, port uint16) func([]byte) bool {
	return func(f []byte) bool {
		if len(f) < 14 {
			return false
		}
		et, off := binary.BigEndian.Uint16(f[12:]), 14
		if et == 0x8100 && len(f) >= 18 {
			et, off = binary.BigEndian.Uint16(f[16:]), 18
		}
		ip := f[off:]
		var proto byte
		var l4 []byte
		switch {
		case et == 0x0800 && src.Is4() && len(ip) >= 20:
			ihl := int(ip[0]&0x0f) * 4
			if len(ip) < ihl+4 || !bytes.Equal(ip[12:16], src.AsSlice()) {
				return false
			}
			proto, l4 = ip[9], ip[ihl:]
		case et == 0x86dd && src.Is6() && len(ip) >= 44:
			if !bytes.Equal(ip[8:24], src.AsSlice()) {
				return false
			}
			proto, l4 = ip[6], ip[40:]
		default:
			return false
		}
		return (proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP) && binary.BigEndian.Uint16(l4) == port
	}
}

// ClientReplies matches what FromAddrPort(src, port) does except frames to
// the balancer lb's own addresses: those answer lbd's health checks
// through the DSR path (check.via: vip), which go to the VIP from lb.
func ClientReplies(src netip.Addr, port uint16, lb *Host) func([]byte) bool {
	from := FromAddrPort(src, port)
	return func(f []byte) bool {
		if !from(f) {
			return false
		}
		et, off := binary.BigEndian.Uint16(f[12:]), 14
		if et == 0x8100 && len(f) >= 18 {
			et, off = binary.BigEndian.Uint16(f[16:]), 18
		}
		ip := f[off:]
		var dst []byte
		if et == 0x0800 {
			dst = ip[16:20]
		} else {
			dst = ip[24:40]
		}
		return !bytes.Equal(dst, lb.IPv4.AsSlice()) && !bytes.Equal(dst, lb.IPv6.AsSlice())
	}
}

// SendFrames sends frames built by frame (i = 0, 1, …; it may reuse buf)
// out of dev in h's namespace until n are sent or d has passed, whichever
// comes first (a bounded load), and returns how many were sent.
func SendFrames(h *Host, dev string, n int, d time.Duration, frame func(i int, buf []byte) []byte) (int, error) {
	sent := 0
	err := h.NS.Do(func() error {
		fd, idx, err := packetSocket(dev, unix.ETH_P_ALL, 10*time.Millisecond)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6}
		buf := make([]byte, 0, 1514)
		end := time.Now().Add(d)
		for sent < n && (sent%1024 != 0 || time.Now().Before(end)) {
			f := frame(sent, buf[:0])
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
					if time.Now().After(end) {
						return nil
					}
					time.Sleep(time.Millisecond)
					continue
				}
				return fmt.Errorf("send frame: %w", err)
			}
			sent++
		}
		return nil
	})
	return sent, err
}

// TCP flags of the segments TCP4 builds.
const (
	FlagSYN = 0x02
	FlagACK = 0x10
)

// TCP4 appends to buf an Ethernet frame from srcMAC to dstMAC carrying a
// TCP segment without payload src -> dst with the given flags (IPv4,
// checksums computed).
func TCP4(buf []byte, srcMAC, dstMAC net.HardwareAddr, src, dst netip.AddrPort, flags byte) []byte {
	buf = append(buf, dstMAC...)
	buf = append(buf, srcMAC...)
	buf = append(buf, 0x08, 0x00)
	ip := len(buf)
	buf = append(buf, 0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0)
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	buf = append(buf, s4[:]...)
	buf = append(buf, d4[:]...)
	binary.BigEndian.PutUint16(buf[ip+10:], checksum(buf[ip:ip+20], 0))
	tcp := len(buf)
	buf = binary.BigEndian.AppendUint16(buf, src.Port())
	buf = binary.BigEndian.AppendUint16(buf, dst.Port())
	buf = append(buf, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0)
	pseudo := uint32(6) + 20
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s4[i:])) + uint32(binary.BigEndian.Uint16(d4[i:]))
	}
	binary.BigEndian.PutUint16(buf[tcp+16:], checksum(buf[tcp:tcp+20], pseudo))
	return buf
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
