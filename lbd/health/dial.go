package health

import (
	"context"
	"net"
)

// dialFunc opens the connection a TCP-based check (tcp, http, https) talks
// over. Every such prober takes its connections from dialerFor, so how a
// check reaches a backend (the kernel's stack to the backend's own address,
// or the DSR path to the VIP) is decided in one place.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// dialerFor picks how target t's checks connect.
func dialerFor(Target) dialFunc { return (&net.Dialer{}).DialContext }
