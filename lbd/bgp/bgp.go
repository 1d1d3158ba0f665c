// Package bgp announces lbd's VIPs to routers over BGP, through an embedded
// GoBGP speaker (github.com/osrg/gobgp/v4): no home-made protocol, no
// second daemon to keep in step. The speaker only originates routes: it
// listens on no port (lbd connects out to each peer) and never touches the kernel's routing table. (A global import policy is not
// used to drop what routers send: GoBGP applies it to locally originated
// paths too. Routers should export nothing to the balancers.)
//
// Each VIP is announced as a host route (/32, /128) to the peers of its
// address family, next hop this balancer's own address on the session, so
// a router with several balancers as peers installs an ECMP route. Because
// the speaker lives in lbd's process, a crashed or killed lbd closes its
// TCP sessions with it and the routers withdraw its routes at once (FIN or
// RST), or after the hold time when the host itself is gone.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/vishvananda/netlink"

	"github.com/dsrlb/dsrlb/shared/config"
)

// Route is one VIP to announce, with its optional attributes.
type Route struct {
	VIP         netip.Addr
	Communities []uint32 // ASN<<16 | value
	MED         *uint32
}

func (r Route) equal(o Route) bool {
	return r.VIP == o.VIP && slices.Equal(r.Communities, o.Communities) &&
		(r.MED == nil) == (o.MED == nil) && (r.MED == nil || *r.MED == *o.MED)
}

// Peer is the state of one BGP session, for status and metrics.
type Peer struct {
	Address    netip.Addr `json:"address"`
	ASN        uint32     `json:"asn"`
	State      string     `json:"state"` // established, active, connect, idle, ...
	Up         bool       `json:"up"`
	Since      time.Time  `json:"since,omitzero"` // when the session came up (Up) or went down
	Advertised uint64     `json:"advertised"`     // prefixes sent to this peer
}

// Status is what the speaker is doing.
type Status struct {
	ASN       uint32       `json:"asn"`
	RouterID  netip.Addr   `json:"router_id"`
	Peers     []Peer       `json:"peers"`
	Announced []netip.Addr `json:"announced"`
}

// Speaker is a running BGP speaker announcing VIPs.
type Speaker struct {
	srv      *server.BgpServer
	log      *slog.Logger
	cfg      config.BGP
	routerID netip.Addr

	mu        sync.Mutex
	announced map[netip.Addr]announced
}

type announced struct {
	route Route
	id    uuid.UUID
}

// Start starts the speaker and adds every peer; sessions come up in the
// background. iface gives the default router id (its first IPv4 address).
func Start(ctx context.Context, cfg config.BGP, iface string, log *slog.Logger) (*Speaker, error) {
	rid := cfg.RouterID
	if !rid.IsValid() {
		var err error
		if rid, err = firstIPv4(iface); err != nil {
			return nil, err
		}
	}
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn) // GoBGP is chatty at info; lbd logs session changes itself
	s := &Speaker{
		srv:       server.NewBgpServer(server.LoggerOption(log.With("component", "gobgp"), lvl)),
		log:       log,
		cfg:       cfg,
		routerID:  rid,
		announced: map[netip.Addr]announced{},
	}
	go s.srv.Serve()
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.ASN, RouterId: rid.String(), ListenPort: -1, // connect out only
	}}); err != nil {
		s.srv.Stop()
		return nil, fmt.Errorf("start BGP speaker: %w", err)
	}
	if err := s.srv.WatchEvent(ctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if ev.Type == apiutil.PEER_EVENT_STATE {
				s.log.Info("BGP session", "peer", ev.Peer.State.NeighborAddress, "state", ev.Peer.State.SessionState.String())
			}
		},
	}, server.WatchPeer()); err != nil {
		s.log.Warn("cannot watch BGP session changes; they will not be logged", "err", err)
	}
	for _, p := range cfg.Peers {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerConf(p)}); err != nil {
			s.srv.Stop()
			return nil, fmt.Errorf("add BGP peer %s: %w", p.Address, err)
		}
	}
	log.Info("BGP speaker started", "asn", cfg.ASN, "router_id", rid, "peers", len(cfg.Peers))
	return s, nil
}

func peerConf(p config.BGPPeer) *api.Peer {
	fam := bgp.RF_IPv4_UC
	if p.Address.Is6() {
		fam = bgp.RF_IPv6_UC
	}
	hold := uint64(p.HoldTime / time.Second)
	return &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: hold, KeepaliveInterval: max(1, hold/3),
			// GoBGP's defaults (120 s, 30 s) would keep a returning
			// balancer out of the ECMP group for minutes.
			ConnectRetry: 2, IdleHoldTimeAfterReset: 1,
		}},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: api.Family_Afi(fam.Afi()), Safi: api.Family_Safi(fam.Safi())}, Enabled: true,
		}}},
	}
}

// firstIPv4 is the first global IPv4 address of iface: the default router id.
func firstIPv4(iface string) (netip.Addr, error) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find %s for the BGP router id: %w", iface, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list addresses of %s for the BGP router id: %w", iface, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip.IsGlobalUnicast() {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s has no IPv4 address to use as BGP router id: set balancer.bgp.router_id", iface)
}

// Announce makes the announced set equal to routes: new VIPs are added,
// changed ones replaced, missing ones withdrawn. Only differences reach
// the peers.
func (s *Speaker) Announce(routes []Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[netip.Addr]Route{}
	for _, r := range routes {
		want[r.VIP] = r
	}
	var errs []error
	for _, vip := range slices.SortedFunc(maps.Keys(s.announced), netip.Addr.Compare) {
		if r, ok := want[vip]; !ok || !r.equal(s.announced[vip].route) {
			if err := s.withdraw(vip); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, vip := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		if _, ok := s.announced[vip]; ok {
			continue
		}
		if err := s.add(want[vip]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Speaker) add(r Route) error {
	bits := 32
	if r.VIP.Is6() {
		bits = 128
	}
	nlri, err := bgp.NewIPAddrPrefix(netip.PrefixFrom(r.VIP, bits))
	if err != nil {
		return fmt.Errorf("announce %s: %w", r.VIP, err)
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := bgp.RF_IPv4_UC
	if r.VIP.Is4() {
		// Unspecified: GoBGP puts the session's local address, this
		// balancer's address on the router's segment.
		nh, _ := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		attrs = append(attrs, nh)
	} else {
		fam = bgp.RF_IPv6_UC
		mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return fmt.Errorf("announce %s: %w", r.VIP, err)
		}
		attrs = append(attrs, mp)
	}
	if len(r.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(r.Communities))
	}
	if r.MED != nil {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(*r.MED))
	}
	res, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{Family: fam, Nlri: nlri, Attrs: attrs}}})
	if err == nil && len(res) == 1 && res[0].Error != nil {
		err = res[0].Error
	}
	if err != nil || len(res) != 1 {
		return fmt.Errorf("announce %s: %w", r.VIP, err)
	}
	s.announced[r.VIP] = announced{route: r, id: res[0].UUID}
	s.log.Info("VIP announced over BGP", "vip", r.VIP)
	return nil
}

func (s *Speaker) withdraw(vip netip.Addr) error {
	a := s.announced[vip]
	if err := s.srv.DeletePath(apiutil.DeletePathRequest{UUIDs: []uuid.UUID{a.id}}); err != nil {
		return fmt.Errorf("withdraw %s: %w", vip, err)
	}
	delete(s.announced, vip)
	s.log.Info("VIP withdrawn from BGP", "vip", vip)
	return nil
}

// Announced lists the VIPs announced now, sorted.
func (s *Speaker) Announced() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Keys(s.announced), netip.Addr.Compare)
}

// Status reads the sessions' states from the speaker.
func (s *Speaker) Status(ctx context.Context) Status {
	st := Status{ASN: s.cfg.ASN, RouterID: s.routerID, Announced: s.Announced()}
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		ps := p.GetState()
		addr, _ := netip.ParseAddr(ps.GetNeighborAddress())
		peer := Peer{Address: addr, ASN: ps.GetPeerAsn(), State: sessionState(ps.GetSessionState())}
		peer.Up = ps.GetSessionState() == api.PeerState_SESSION_STATE_ESTABLISHED
		if ts := p.GetTimers().GetState(); ts != nil {
			if peer.Up && ts.GetUptime() != nil {
				peer.Since = ts.GetUptime().AsTime()
			} else if !peer.Up && ts.GetDowntime() != nil && ts.GetDowntime().GetSeconds() > 0 {
				peer.Since = ts.GetDowntime().AsTime()
			}
		}
		for _, af := range p.GetAfiSafis() {
			peer.Advertised += af.GetState().GetAdvertised()
		}
		st.Peers = append(st.Peers, peer)
	})
	slices.SortFunc(st.Peers, func(a, b Peer) int { return a.Address.Compare(b.Address) })
	return st
}

func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_SESSION_STATE_IDLE:
		return "idle"
	case api.PeerState_SESSION_STATE_CONNECT:
		return "connect"
	case api.PeerState_SESSION_STATE_ACTIVE:
		return "active"
	case api.PeerState_SESSION_STATE_OPENSENT:
		return "opensent"
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// Stop withdraws every VIP, waits wait so the routers move the traffic to
// the other balancers while this one still forwards, then closes the
// sessions and stops the speaker.
func (s *Speaker) Stop(wait time.Duration) {
	s.mu.Lock()
	n := len(s.announced)
	for _, vip := range slices.SortedFunc(maps.Keys(s.announced), netip.Addr.Compare) {
		if err := s.withdraw(vip); err != nil {
			s.log.Warn("withdraw on shutdown failed; the session close withdraws it", "vip", vip, "err", err)
		}
	}
	s.mu.Unlock()
	if n > 0 && wait > 0 {
		s.log.Info("VIPs withdrawn; waiting before closing the BGP sessions", "wait", wait)
		time.Sleep(wait)
	}
	s.srv.Stop()
	s.log.Info("BGP speaker stopped")
}
