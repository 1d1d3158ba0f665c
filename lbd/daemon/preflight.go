package daemon

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/dsrlb/dsrlb/internal/caps"

	"github.com/vishvananda/netlink"

	"github.com/dsrlb/dsrlb/shared/config"
)

// Preflight checks on this host everything lbd run needs before it makes
// its first kernel change, so a start either fails having changed nothing
// or gets through: the interface exists, the privileges are there, bpffs
// is (or can be) mounted for the pin path, every backend is on-link, and
// the metrics address can be bound. It changes nothing (`lbd validate
// --host`); Run repeats it, binding the metrics socket for good.
func Preflight(cfg *config.Config) error {
	if err := checkInterface(cfg); err != nil {
		return err
	}
	if err := CheckPrivileges(); err != nil {
		return err
	}
	if err := CheckBPFFS(cfg.Balancer.PinPath); err != nil {
		return err
	}
	if err := checkOnLink(cfg); err != nil {
		return err
	}
	if err := CheckWebConfig(cfg); err != nil {
		return err
	}
	if err := cfg.CheckFiles(); err != nil {
		return err
	}
	ln, err := listenMetrics(cfg.Balancer.MetricsListen)
	if ln != nil {
		ln.Close()
	}
	return err
}

// checkInterface refuses a balancer.interface this host lacks, once and
// listing the ones it has, rather than once per server with netlink's
// "Link not found".
func checkInterface(cfg *config.Config) error {
	name := cfg.Balancer.Interface
	if _, err := netlink.LinkByName(name); err == nil {
		return nil
	}
	var names []string
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			names = append(names, i.Name)
		}
	}
	return fmt.Errorf("%s: balancer.interface %q: no such interface on this host (it has: %s); set balancer.interface to the NIC facing the backends",
		cfg.File, name, strings.Join(names, ", "))
}

// Capabilities lbd needs: loading and pinning BPF (CAP_BPF), reading
// its maps and attaching to tc (CAP_PERFMON for pointer-carrying maps,
// CAP_NET_ADMIN for tc, addresses and neighbours), and sending ARP/ND
// probes and announcements, listening for other hosts' and the health
// checks through the DSR path (CAP_NET_RAW: the start-time VIP probe, the
// ARP guard, check.via: vip). CAP_SYS_ADMIN implies the first two.
var needCaps = []struct {
	name string
	bit  uint
}{{"CAP_BPF", 39}, {"CAP_NET_ADMIN", 12}, {"CAP_PERFMON", 38}, {"CAP_NET_RAW", 13}}

const capSysAdmin = 21

// ErrPrivileges: lbd lacks capabilities it needs.
var ErrPrivileges = errors.New("missing privileges")

// CheckPrivileges returns one line naming the capabilities lbd lacks.
func CheckPrivileges() error {
	eff, err := caps.Effective()
	if err != nil {
		return fmt.Errorf("read own capabilities: %w", err)
	}
	return missingCaps(eff)
}

// missingCaps names the capabilities lbd needs that eff (a CapEff mask) lacks.
func missingCaps(eff uint64) error {
	var missing []string
	for _, c := range needCaps {
		implied := (c.bit == 39 || c.bit == 38) && eff&(1<<capSysAdmin) != 0
		if eff&(1<<c.bit) == 0 && !implied {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		why := ""
		if slices.Contains(missing, "CAP_NET_RAW") {
			why = " (CAP_NET_RAW: ARP/ND probes and the health checks through the DSR path, check.via: vip)"
		}
		return fmt.Errorf("%w: lbd needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_NET_RAW and lacks %s%s: run it as root (the lbd unit does) or grant them, e.g. AmbientCapabilities= in a unit",
			ErrPrivileges, strings.Join(missing, ", "), why)
	}
	return nil
}

// listenMetrics binds the metrics address ("" = metrics off: nil, nil).
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w (change balancer.metrics.listen, or \"\" to turn metrics off)", addr, err)
	}
	return ln, nil
}
