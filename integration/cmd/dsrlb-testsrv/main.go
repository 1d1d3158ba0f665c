// Command dsrlb-testsrv is the integration tests' backend application: an
// HTTP server and a UDP echo that both answer
//
//	backend=<name> client=<ip:port>
//
// naming themselves and the client address they saw. The UDP echo replies
// from the address the datagram was sent to (IP_PKTINFO), so a reply to a
// VIP comes from the VIP, as DSR needs. It prints "ready" once listening.
//
//	dsrlb-testsrv -name b1 -http 80 -udp 5353
//
// HTTP paths: / answers at once, /slow?ms=N after N ms (at most 30 s),
// /healthz answers "ok", /bytes?n=N answers N bytes (at most 16 MiB, for
// the benchmarks: one prebuilt body per size, written without copying).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	name := flag.String("name", "", "name reported in every answer (required)")
	httpPorts := flag.String("http", "80", "comma-separated TCP ports for HTTP; empty for none")
	udpPorts := flag.String("udp", "", "comma-separated UDP ports for the echo; empty for none")
	bind := flag.String("bind", "", "HTTP listens on this address only (e.g. the host's own, not the VIP); default every address")
	flag.Parse()
	if *name == "" {
		log.Fatal("dsrlb-testsrv: -name is required")
	}
	log.SetPrefix("dsrlb-testsrv " + *name + ": ")
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend=%s client=%s\n", *name, r.RemoteAddr)
	}
	mux.HandleFunc("/", answer)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/bytes", serveBytes)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(min(time.Duration(ms)*time.Millisecond, 30*time.Second)):
		case <-r.Context().Done():
			return
		}
		answer(w, r)
	})
	var servers []*http.Server
	for _, p := range ports(*httpPorts) {
		ln, err := net.Listen("tcp", net.JoinHostPort(*bind, p)) // by default dual stack, every address: the VIPs on lo too
		if err != nil {
			log.Fatalf("listen tcp %s: %v", net.JoinHostPort(*bind, p), err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Fatalf("serve http: %v", err)
			}
		}()
	}
	for _, p := range ports(*udpPorts) {
		for _, network := range []string{"udp4", "udp6"} {
			c, err := listenUDP(network, p)
			if err != nil {
				log.Fatal(err)
			}
			go echo(c, *name)
		}
	}
	fmt.Println("ready")
	<-ctx.Done()
	for _, s := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.Shutdown(sctx)
		cancel()
	}
}

func ports(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// listenUDP listens on the wildcard address with packet info on, so each
// datagram tells which local address it was sent to.
func listenUDP(network, port string) (*net.UDPConn, error) {
	host := "0.0.0.0"
	if network == "udp6" {
		host = "::"
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if network == "udp4" {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), network, net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("listen %s :%s: %w", network, port, err)
	}
	return pc.(*net.UDPConn), nil
}

// echo answers each datagram from the address it was sent to.
func echo(c *net.UDPConn, name string) {
	buf, oob := make([]byte, 2048), make([]byte, 256)
	for {
		_, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			log.Printf("read udp: %v", err)
			return
		}
		reply := []byte(fmt.Sprintf("backend=%s client=%s\n", name, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())))
		var cm []byte
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				switch {
				case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
					var dst [4]byte
					copy(dst[:], m.Data[8:12]) // struct in_pktinfo: ifindex, spec_dst, addr (the header's destination)
					cm = unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: dst})
				case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
					var dst [16]byte
					copy(dst[:], m.Data[0:16]) // struct in6_pktinfo: addr, ifindex
					cm = unix.PktInfo6(&unix.Inet6Pktinfo{Addr: dst})
				}
			}
		}
		if _, _, err := c.WriteMsgUDPAddrPort(reply, cm, from); err != nil {
			log.Printf("reply to %s: %v", from, err)
		}
	}
}

// maxBody bounds /bytes?n=.
const maxBody = 16 << 20

// bodies caches one body per size asked for: map[int][]byte.
var bodies sync.Map

// serveBytes answers /bytes?n=N with N bytes of 'x' and an exact
// Content-Length.
func serveBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 || n > maxBody {
		http.Error(w, fmt.Sprintf("n must be 0..%d", maxBody), http.StatusBadRequest)
		return
	}
	b, ok := bodies.Load(n)
	if !ok {
		b, _ = bodies.LoadOrStore(n, []byte(strings.Repeat("x", n)))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	_, _ = w.Write(b.([]byte))
}
