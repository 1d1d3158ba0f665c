package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/packet"
)

// Probing before a VIP is taken (RFC 5227 for IPv4, RFC 4862 duplicate
// address detection for IPv6), shortened: RFC 5227's 1–2 s between probes
// would hold lbd's start for seconds per restart, and a host that owns the
// address answers a probe within milliseconds on one segment.
const (
	ProbeCount = 3
	ProbeGap   = 50 * time.Millisecond
	// ProbeWait is how long answers are awaited after the last probe.
	ProbeWait = 200 * time.Millisecond
)

// Conflict is a VIP another host on the segment answers for: lbd does not
// take it.
type Conflict struct {
	VIP netip.Addr
	MAC net.HardwareAddr // the other host's
}

func (c Conflict) String() string { return fmt.Sprintf("%s (answered by %s)", c.VIP, c.MAC) }

// Probe asks the segment on ifname whether another host already uses any
// of the VIPs: ARP probes (sender 0.0.0.0, `arping -D`) for IPv4, DAD
// neighbour solicitations (source ::) for IPv6, ProbeCount of each,
// ProbeGap apart, answers awaited ProbeWait after the last. A VIP is in
// conflict when another MAC answers for it, announces it, or probes for
// it at the same time. It needs CAP_NET_RAW.
func (n Namespace) Probe(ifname string, vips []netip.Addr) ([]Conflict, error) {
	var v4, v6 []netip.Addr
	for _, v := range vips {
		if v = v.Unmap(); v.Is4() {
			v4 = append(v4, v)
		} else {
			v6 = append(v6, v)
		}
	}
	seg, err := n.OpenSegment(ifname, len(v4) > 0, len(v6) > 0)
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	if !seg.Ethernet() {
		return nil, nil // no Ethernet segment (tun, lo): nobody to ask
	}
	probed := map[netip.Addr]bool{}
	for _, v := range vips {
		probed[v.Unmap()] = true
	}
	var (
		mu        sync.Mutex
		conflicts = map[netip.Addr]net.HardwareAddr{}
		wg        sync.WaitGroup
		found     = func(c Sighting) {
			mu.Lock()
			if _, ok := conflicts[c.VIP]; !ok {
				conflicts[c.VIP] = c.MAC
			}
			mu.Unlock()
		}
	)
	end := time.Now().Add(ProbeCount*ProbeGap + ProbeWait)
	for _, c := range []*packet.Conn{seg.ARP, seg.ND} {
		if c == nil {
			continue
		}
		c.SetReadDeadline(end)
		wg.Add(1)
		go func() {
			defer wg.Done()
			listen(c, seg.Ifi.HardwareAddr, func(v netip.Addr) bool { return probed[v] }, found)
		}()
	}
	var errs []error
	for i := range ProbeCount {
		if i > 0 {
			time.Sleep(ProbeGap)
		}
		if len(v4) > 0 {
			errs = append(errs, seg.SendARP(netip.IPv4Unspecified(), v4))
		}
		if len(v6) > 0 {
			errs = append(errs, seg.SendNS(netip.IPv6Unspecified(), v6))
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("probe VIPs on %s: %w", ifname, err)
	}
	var out []Conflict
	for _, v := range vips {
		if mac, ok := conflicts[v.Unmap()]; ok {
			out = append(out, Conflict{VIP: v.Unmap(), MAC: mac})
		}
	}
	return out, nil
}

// listen reads frames until the deadline and reports every VIP another
// MAC claims or probes for.
func listen(c *packet.Conn, ours net.HardwareAddr, isVIP func(netip.Addr) bool, found func(Sighting)) {
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return // deadline reached (or socket closed)
		}
		if cl, ok := ParseSighting(buf[:n], ours, isVIP); ok {
			found(cl)
		}
	}
}
