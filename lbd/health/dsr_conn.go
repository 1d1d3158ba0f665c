package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/packet"
)

// dsrConn is the client side of one TCP connection of a DSR-path check,
// spoken over the shared packet socket: just enough TCP for a connect and
// one request/response. It sends its data at once and retransmits what is
// not acknowledged; it takes data in order only (anything else is
// answered with a duplicate ACK, so the backend retransmits); it always
// ends with a RST, so the backend keeps no connection and the balancer
// none in TIME_WAIT. It is a net.Conn, so the http (and https) probers run
// over it unchanged.
type dsrConn struct {
	path           *dsrPath
	sock           *packet.Conn
	local, remote  netip.AddrPort // remote is the VIP
	backend        netip.Addr     // whose MAC the frames go to
	onLink         bool           // the backend answers local on the segment (see source)
	srcMAC, dstMAC net.HardwareAddr
	mss            int // largest payload we send

	mu       sync.Mutex
	state    connState
	iss      uint32
	sndUna   uint32 // oldest unacknowledged sequence number
	sndNxt   uint32
	rcvNxt   uint32
	unacked  []byte // sent from sndUna on, not yet acknowledged
	lastSend time.Time
	rbuf     []byte // received in order, not yet read
	received int    // bytes received in all, bounded by maxReceive
	fin      bool   // the backend closed its side
	err      error  // the connection is over: refused, reset, socket failure
	readDL   time.Time
	wake     chan struct{} // signalled on every change a waiter may care about
	done     chan struct{} // closed by Close
}

type connState uint8

const (
	synSent connState = iota
	established
	closed
)

const (
	// synRetry is the first SYN retransmission delay, doubled each time:
	// a lost SYN must not fail a check whose timeout is 1 s.
	synRetry = 200 * time.Millisecond
	// dataRetry is how long sent data waits for its ACK before it is sent again.
	dataRetry = 200 * time.Millisecond
	// maxReceive bounds what one check connection takes in: a health
	// answer is small, a backend streaming forever must not cost memory.
	maxReceive = 256 << 10
	// window is what we advertise: we always have room up to maxReceive.
	window = 65535
)

// dial opens a DSR-path connection to t's VIP on port, framed to t's MAC.
func (p *dsrPath) dial(ctx context.Context, t Target, port uint16) (net.Conn, error) {
	backend := t.Addr.Addr()
	dstMAC := p.mac(t)
	if dstMAC == nil {
		return nil, fmt.Errorf("no MAC for %s yet: it does not answer ARP/ND on %s, so no DSR-path check can be framed to it", backend, p.opts.Interface)
	}
	sock, ifi, src, err := p.ready(backend)
	if err != nil {
		return nil, err
	}
	c := &dsrConn{
		path: p, sock: sock, backend: backend, onLink: src.onLink, srcMAC: ifi.HardwareAddr, dstMAC: dstMAC,
		local:  netip.AddrPortFrom(src.addr, 0),
		remote: netip.AddrPortFrom(t.VIP.Unmap(), port),
		mss:    mssFor(ifi.MTU, src.addr),
		iss:    rand.Uint32(),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	c.sndUna, c.sndNxt = c.iss, c.iss+1
	if err := p.register(c); err != nil {
		return nil, err
	}
	if err := c.handshake(ctx); err != nil {
		c.mu.Lock()
		c.state = closed
		c.mu.Unlock()
		p.unregister(c)
		return nil, err
	}
	return c, nil
}

// offLinkHint adds to a check's timeout reason, when the check came from
// an address on no subnet of the backend's, the other likely cause: the
// backend answers such an address through its routes, not on the segment.
func (c *dsrConn) offLinkHint() string {
	if c.onLink {
		return ""
	}
	return fmt.Sprintf(" Or its answer to %s goes by its routes: no address of the balancer on %s is on %s's subnet; add one there, or set check.via: address",
		c.local.Addr(), c.path.opts.Interface, c.backend)
}

// mssFor is the MSS of a link MTU for src's family.
func mssFor(mtu int, src netip.Addr) int {
	if mtu <= 0 {
		mtu = 1500
	}
	if src.Is4() {
		return mtu - 40
	}
	return mtu - 60
}

// handshake sends the SYN until the SYN-ACK (or a RST) comes or ctx ends.
// The final ACK is not sent on its own: the first data segment carries
// it, and a connect-only check answers the SYN-ACK with its RST.
func (c *dsrConn) handshake(ctx context.Context) error {
	retry := synRetry
	// Give up a little before ctx does, so the caller (http.Client too)
	// reports why, not just "context deadline exceeded".
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-min(50*time.Millisecond, time.Until(dl)/10)))
		defer cancel()
	}
	for {
		if err := c.sendSegment(segment{seq: c.iss, flags: flagSYN, mss: uint16(c.mss)}); err != nil {
			return err
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			// No duration in the text: it is the backend's status reason,
			// which should change only when something else is wrong.
			return fmt.Errorf("VIP %s not answered by %s through the DSR path (no SYN-ACK within the check timeout): is hostprep applied (VIP on lo)?%s",
				c.remote, c.backend, c.offLinkHint())
		case <-c.wake:
			t.Stop()
			c.mu.Lock()
			st, err := c.state, c.err
			c.mu.Unlock()
			if err != nil {
				return err
			}
			if st == established {
				return nil
			}
			continue // woken by something else: wait on (the SYN is resent)
		case <-t.C:
			retry *= 2
		}
	}
}

// deliver takes one segment from the backend (the path's reader).
func (c *dsrConn) deliver(s segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.signal()
	switch c.state {
	case synSent:
		c.deliverSynSent(s)
	case established:
		c.deliverEstablished(s)
	}
}

func (c *dsrConn) deliverSynSent(s segment) {
	if !s.has(flagACK) || s.ack != c.iss+1 {
		return // not about our SYN
	}
	if s.has(flagRST) {
		c.err = fmt.Errorf("VIP %s refused by %s through the DSR path (RST): nothing listens on the VIP there; "+
			"make the service listen on the VIP or on all addresses, or set check.via: address", c.remote, c.backend)
		c.state = closed
		return
	}
	if s.has(flagSYN) {
		c.rcvNxt = s.seq + 1
		c.sndUna = c.iss + 1
		if s.mss != 0 && int(s.mss) < c.mss {
			c.mss = int(s.mss)
		}
		c.state = established
	}
}

func (c *dsrConn) deliverEstablished(s segment) {
	if s.has(flagRST) {
		if s.seq == c.rcvNxt || (s.has(flagACK) && s.ack == c.sndNxt) {
			c.err = fmt.Errorf("connection to VIP %s on %s reset by the backend", c.remote, c.backend)
			c.state = closed
		}
		return
	}
	if s.has(flagSYN) {
		// The SYN-ACK again: our ACK is missing. Data carries it; with no
		// data yet there is nothing to send (the RST of Close will do).
		c.retransmit()
		return
	}
	if s.has(flagACK) && seqAfter(s.ack, c.sndUna) && !seqAfter(s.ack, c.sndNxt) {
		c.unacked = c.unacked[min(int(s.ack-c.sndUna), len(c.unacked)):]
		c.sndUna = s.ack
	}
	if len(s.payload) == 0 && !s.has(flagFIN) {
		return
	}
	if s.seq == c.rcvNxt && !c.fin {
		if c.received+len(s.payload) > maxReceive {
			c.err = fmt.Errorf("answer of %s through the DSR path is larger than %d bytes", c.backend, maxReceive)
			return
		}
		c.rbuf = append(c.rbuf, s.payload...)
		c.received += len(s.payload)
		c.rcvNxt += uint32(len(s.payload))
		if s.has(flagFIN) {
			c.rcvNxt++
			c.fin = true
		}
	}
	// In order: acknowledge it; out of order or repeated: a duplicate
	// ACK of what we have, so the backend resends the gap.
	if err := c.sendSegment(segment{seq: c.sndNxt, ack: c.rcvNxt, flags: flagACK}); err != nil {
		c.err = err
	}
}

// seqAfter reports whether sequence number a comes after b (RFC 9293 3.4).
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// signal wakes a waiter; one pending wake-up is enough.
func (c *dsrConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// sendSegment fills in the addresses and sends s.
func (c *dsrConn) sendSegment(s segment) error {
	s.srcMAC, s.dstMAC = c.srcMAC, c.dstMAC
	s.src, s.dst = c.local, c.remote
	if s.window == 0 && !s.has(flagRST) {
		s.window = window
	}
	frame, err := s.marshal()
	if err != nil {
		return err
	}
	return c.path.send(c.sock, frame, c.dstMAC)
}

// sendData sends b from sequence number seq, in segments of at most mss.
// Called with c.mu held.
func (c *dsrConn) sendData(seq uint32, b []byte) error {
	for len(b) > 0 {
		n := min(len(b), c.mss)
		if err := c.sendSegment(segment{seq: seq, ack: c.rcvNxt, flags: flagACK | flagPSH, payload: b[:n]}); err != nil {
			return err
		}
		seq += uint32(n)
		b = b[n:]
	}
	c.lastSend = time.Now()
	return nil
}

// retransmit sends the unacknowledged data again. Called with c.mu held.
func (c *dsrConn) retransmit() {
	if len(c.unacked) == 0 {
		return
	}
	if err := c.sendData(c.sndUna, c.unacked); err != nil {
		c.err = err
	}
}

// Write sends b at once (a check's request is small) and keeps it for
// retransmission until it is acknowledged.
func (c *dsrConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return 0, c.err
	case c.state != established:
		return 0, net.ErrClosed
	case len(c.unacked)+len(b) > maxReceive:
		return 0, fmt.Errorf("write to %s through the DSR path: more than %d bytes unacknowledged", c.backend, maxReceive)
	}
	if err := c.sendData(c.sndNxt, b); err != nil {
		return 0, err
	}
	c.unacked = append(c.unacked, b...)
	c.sndNxt += uint32(len(b))
	return len(b), nil
}

// Read returns data in order; io.EOF once the backend closed and all was read.
func (c *dsrConn) Read(b []byte) (int, error) {
	for {
		c.mu.Lock()
		if len(c.rbuf) > 0 {
			n := copy(b, c.rbuf)
			c.rbuf = c.rbuf[n:]
			c.mu.Unlock()
			return n, nil
		}
		var err error
		switch {
		case c.fin:
			err = io.EOF
		case c.err != nil:
			err = c.err
		case c.state == closed:
			err = net.ErrClosed
		case !c.readDL.IsZero() && !time.Now().Before(c.readDL):
			err = os.ErrDeadlineExceeded
		}
		if err != nil {
			c.mu.Unlock()
			return 0, err
		}
		if len(c.unacked) > 0 && time.Since(c.lastSend) >= dataRetry {
			c.retransmit()
		}
		wait := dataRetry
		if !c.readDL.IsZero() {
			wait = min(wait, time.Until(c.readDL))
		}
		c.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-c.wake:
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
	}
}

// Close ends the connection with a RST and frees its port.
func (c *dsrConn) Close() error {
	c.mu.Lock()
	if c.state == closed && c.err == nil {
		select {
		case <-c.done:
			c.mu.Unlock()
			return nil
		default:
		}
	}
	// Established also after our own errors (an answer past maxReceive):
	// the backend still holds the connection and must get the RST, or a
	// later check reusing the 4-tuple meets challenge ACKs. A RST from the
	// backend already set state closed.
	wasOpen := c.state == established
	c.state = closed
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	var err error
	if wasOpen {
		err = c.sendSegment(segment{seq: c.sndNxt, ack: c.rcvNxt, flags: flagRST | flagACK})
	}
	c.mu.Unlock()
	c.path.unregister(c)
	return err
}

// fail ends the connection from outside (the socket failed).
func (c *dsrConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.signal()
}

func (c *dsrConn) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(c.local) }
func (c *dsrConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

func (c *dsrConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *dsrConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDL = t
	c.mu.Unlock()
	c.signal()
	return nil
}

// SetWriteDeadline is accepted and ignored: Write never blocks.
func (c *dsrConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*dsrConn)(nil)

var errNoDSR = errors.New("DSR-path checks are not set up in this health manager: set check.via: address")
