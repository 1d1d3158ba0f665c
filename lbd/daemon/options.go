package daemon

import (
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/shared/config"
)

// DataplaneOptions sizes and places the data plane as the configuration
// says: the one mapping from config.Balancer to datapath.Options, used by
// the daemon, by the commands that read the pinned maps, and by tests, so
// they all open the same maps with the same sizes.
func DataplaneOptions(b config.Balancer) datapath.Options {
	return datapath.Options{
		Interface:       b.Interface,
		PinPath:         b.PinPath,
		ConntrackSize:   b.Conntrack.Size,
		TCPTimeout:      b.Conntrack.TCPTimeout,
		UDPTimeout:      b.Conntrack.UDPTimeout,
		MaglevTableSize: b.MaglevTableSize,
	}
}
