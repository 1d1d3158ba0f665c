package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// maxDatagram bounds the answer read by a udp check; a longer datagram is
// truncated, which is fine for a substring match on its start.
const maxDatagram = 4 << 10

// udpProber sends one datagram from a connected socket and succeeds on an
// answer (containing expect, when set). Connected, the socket only takes
// answers from the backend, and the kernel reports an ICMP port
// unreachable for it as ECONNREFUSED on the next read: down at once, no
// need to wait for the timeout.
type udpProber struct {
	addr   string
	send   []byte
	expect []byte
}

func (p udpProber) probe(ctx context.Context) error {
	c, err := (&net.Dialer{}).DialContext(ctx, "udp", p.addr)
	if err != nil {
		return fmt.Errorf("udp check of %s: %w", p.addr, err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(p.send); err != nil {
		return p.explain(err)
	}
	buf := make([]byte, maxDatagram)
	n, err := c.Read(buf)
	if err != nil {
		return p.explain(err)
	}
	if len(p.expect) > 0 && !bytes.Contains(buf[:n], p.expect) {
		return fmt.Errorf("udp %s answered %s, which lacks %q: is it the right service (check.send, check.expect)?", p.addr, quoteStart(buf[:n]), p.expect)
	}
	return nil
}

func (p udpProber) explain(err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("udp %s: ICMP port unreachable: nothing listens on that port of the backend; is the service running?", p.addr)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("udp %s: no answer to the %d-byte datagram within the timeout: is the service up, and does it answer check.send?", p.addr, len(p.send))
	}
	return fmt.Errorf("udp %s: %w", p.addr, err)
}

// quoteStart quotes the start of an answer for a message.
func quoteStart(b []byte) string {
	const show = 64
	if len(b) > show {
		return fmt.Sprintf("%q... (%d bytes)", b[:show], len(b))
	}
	return fmt.Sprintf("%q", b)
}
