package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/dsrlb/dsrlb/lbd/bgp"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/lbd/neigh"
	"github.com/dsrlb/dsrlb/lbd/vip"
	"github.com/dsrlb/dsrlb/shared/config"
)

// The daemon's seams: what it needs of the kernel and the host, as small
// interfaces the real packages satisfy and in-process tests replace
// (lifecycle_test.go), in the spirit of hostprep's cli.Env. The notifier,
// the reload signal and the run-file paths are already Options fields.

// dataPlane is what the daemon uses of the pinned data plane
// (*datapath.Datapath).
type dataPlane interface {
	Adopted() bool
	// Replaced: Open made fresh maps for incompatible pinned ones
	// (--replace-incompatible), put in their place by Attach.
	Replaced() bool
	Stats() (datapath.Stats, error)
	Apply(services []datapath.Service) error
	// Fits reports whether Apply(services) has the room it needs
	// (datapath.ErrCapacity otherwise).
	Fits(services []datapath.Service) error
	Attach() error
	// Attached reports whether the data plane Open found is attached,
	// before Attach.
	Attached() (bool, error)
	// Detach detaches the program, leaving the maps pinned.
	Detach() error
	// RestoreSettings puts back the settings (timeouts) Open wrote into
	// an adopted data plane (failed start).
	RestoreSettings() error
	CheckAttached() error
	Reattach() error
	ActiveFlows(st *datapath.Stats) error
	ConntrackStats() (datapath.ConntrackStats, error)
	ConntrackLimit() uint32
	ConntrackEntries() (uint64, error)
	// Remove detaches and unpins what this lbd created (failed start).
	Remove() error
	// Unpin unpins the maps this lbd created and closes, leaving the
	// program found attached and its pinned maps (failed start over it,
	// before Attach).
	Unpin() error
	// Close releases the file descriptors only: forwarding continues.
	Close() error
}

// neighbours resolves backend MACs (*neigh.Resolver).
type neighbours interface {
	SetAddrs(addrs []netip.Addr)
	Lookup(addr netip.Addr) (neigh.Neighbor, bool)
	Close()
}

// healthChecks runs the health checks (*health.Manager).
type healthChecks interface {
	Update(targets []health.Target) error
	State(key string) (health.State, bool)
	Status() []health.Status
	Close()
}

// vipManager takes and releases the VIPs on the balancer interface
// (vip.Namespace).
type vipManager interface {
	Prepare(ifname string, vips []netip.Addr, log *slog.Logger) (vip.Prepared, error)
	TakePrepared(p vip.Prepared, log *slog.Logger) (vip.Taken, error)
	Claim(ifname string, vips []netip.Addr, log *slog.Logger) (vip.Taken, error)
	Release(ifname string, vips []netip.Addr, log *slog.Logger) error
	ReleaseAdded(ifname string, vips []netip.Addr, log *slog.Logger) error
	Owned(ifname string) ([]netip.Addr, error)
}

// bgpSpeaker announces the VIPs to the routers (*bgp.Speaker), in BGP
// mode only.
type bgpSpeaker interface {
	// Announce makes the announced set equal to routes.
	Announce(routes []bgp.Route) error
	Status(ctx context.Context) bgp.Status
	// Stop withdraws every VIP, waits wait, then closes the sessions.
	Stop(wait time.Duration)
}

// system is the outside world of one Run: the host checks of preflight,
// the constructors of the data plane and the observers, the VIPs and the
// clock. Options.sys nil is the real host (hostSystem).
type system struct {
	// Preflight on this host (preflight.go, bpffs.go).
	checkInterface  func(cfg *config.Config) error
	checkPrivileges func() error
	ensureBPFFS     func(pinPath string, log *slog.Logger) error
	onLink          func(ifname string, addr netip.Addr) error

	openDataplane func(opts datapath.Options, log *slog.Logger) (dataPlane, error)
	newNeighbours func(ctx context.Context, opts neigh.Options) (neighbours, error)
	newHealth     func(ctx context.Context, opts health.Options) healthChecks
	startBGP      func(ctx context.Context, cfg config.BGP, iface string, log *slog.Logger) (bgpSpeaker, error)
	vips          vipManager
	now           func() time.Time
	// attachEvery is how often the loop checks the program is attached.
	attachEvery time.Duration
}

// hostSystem is the real host: netlink, bpffs, BPF, the wall clock.
func hostSystem() *system {
	return &system{
		checkInterface:  checkInterface,
		checkPrivileges: CheckPrivileges,
		ensureBPFFS:     EnsureBPFFS,
		onLink:          neigh.OnLink,
		openDataplane: func(opts datapath.Options, log *slog.Logger) (dataPlane, error) {
			dp, err := datapath.Open(opts, log)
			if err != nil {
				return nil, err // a nil interface, not a nil *Datapath in one
			}
			return dp, nil
		},
		newNeighbours: func(ctx context.Context, opts neigh.Options) (neighbours, error) {
			r, err := neigh.New(ctx, opts)
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		newHealth: func(ctx context.Context, opts health.Options) healthChecks { return health.New(ctx, opts) },
		startBGP: func(ctx context.Context, cfg config.BGP, iface string, log *slog.Logger) (bgpSpeaker, error) {
			s, err := bgp.Start(ctx, cfg, iface, log)
			if err != nil {
				return nil, err // a nil interface, not a nil *Speaker in one
			}
			return s, nil
		},
		vips:        vip.Current(),
		now:         time.Now,
		attachEvery: AttachCheckInterval,
	}
}

// host is the system this daemon acts on: the real host unless a test
// gave another (Daemons built by tests without one get the real host).
func (d *Daemon) host() *system {
	if d.sys == nil {
		return realHost()
	}
	return d.sys
}

var realHost = sync.OnceValue(hostSystem)
