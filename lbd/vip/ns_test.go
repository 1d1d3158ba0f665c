package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
)

// Take claims the VIPs and returns an error when any could not be taken,
// a conflict included (lbd logs conflicts and goes on: see Namespace.Claim).
func (n Namespace) Take(ifname string, vips []netip.Addr, log *slog.Logger) error {
	t, err := n.Claim(ifname, vips, log)
	for _, c := range t.Conflicts {
		err = errors.Join(err, fmt.Errorf("VIP %s not taken: %s answers for it on %s", c.VIP, c.MAC, ifname))
	}
	return err
}
