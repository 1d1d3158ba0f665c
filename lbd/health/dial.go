package health

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/dsrlb/dsrlb/shared/config"
)

// dialFunc opens the connection a TCP-based check (tcp, http, https) talks
// over. Every such prober takes its connections from dialerFor, so how a
// check reaches a backend (the kernel's stack to the backend's own address,
// or the DSR path to the VIP) is decided in one place.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// dialerFor picks how target t's checks connect: through the DSR path
// (dsr.go) when the check asks for it (check.via: vip) and t names its
// VIP, else the kernel's stack to the address the prober dials.
func dialerFor(t Target) dialFunc {
	if !t.viaVIP() {
		return (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if t.dsr == nil {
			return nil, errNoDSR
		}
		// The prober names the backend's address; through the DSR path
		// only its port is used: the destination is the VIP.
		_, p, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", address, err)
		}
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil || port == 0 {
			return nil, fmt.Errorf("dial %s: bad port %q", address, p)
		}
		// http.Transport dials with a context that carries no deadline
		// (a dial may outlive its request): bound it by the check's
		// timeout, so a silent backend gives the DSR path's reason and
		// not the request's "context deadline exceeded".
		if _, ok := ctx.Deadline(); !ok && t.Check.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, t.Check.Timeout*9/10)
			defer cancel()
		}
		return t.dsr.dial(ctx, t, uint16(port))
	}
}

// viaVIP reports whether t's checks go through the DSR path.
func (t Target) viaVIP() bool { return t.Check.Via == config.ViaVIP && t.VIP.IsValid() }
