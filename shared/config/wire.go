// Package config is the one configuration schema read by both lbd (the
// balancer) and hostprep (the backend agent): strict YAML parsing, defaults
// and validation with file:line messages.
//
// The file is decoded in two steps. The wire types below mirror the YAML
// exactly (pointers mark "not set" so defaults can be told apart from zero
// values); Load then validates them into the domain types of domain.go, which
// are what the rest of dsrlb uses.
package config

// wireFile is the top level of a dsrlb.yaml file.
type wireFile struct {
	Balancer *wireBalancer `yaml:"balancer" doc:"Settings of the balancer host (read by lbd, ignored by hostprep)."`
	Services []wireService `yaml:"services" doc:"The virtual services: one VIP, one protocol, some ports, a set of servers. At most 4096; all together at most 16384 (vip, protocol, port) entries (a service of every port is one) and 65535 servers and fallbacks, the room the data plane has; a reload needs room for what it keeps and what it adds at once (lbd refuses one that does not fit: reload in two steps)."`

	balancerLine int // line of the balancer: key, for messages about its absent fields
}

type wireBalancer struct {
	Interface       string         `yaml:"interface" doc:"The NIC that receives client traffic for the VIPs; frames leave by the same NIC (one-arm)."`
	MaglevTableSize *uint32        `yaml:"maglev_table_size" doc:"Largest Maglev lookup table: each service gets a prime of at least 100 slots per server (in steps of about 2x), at most this; a prime, at least 10 x the servers of the largest service. Default 65537."`
	Conntrack       *wireConntrack `yaml:"conntrack" doc:"The LRU connection table that keeps established flows on their backend."`
	PinPath         *string        `yaml:"pin_path" doc:"Directory under bpffs where maps and the program link are pinned. Default /sys/fs/bpf/dsrlb."`
	Metrics         *wireMetrics   `yaml:"metrics" doc:"Prometheus metrics endpoint."`
	VIPOwner        string         `yaml:"vip_owner" doc:"Who puts the VIPs on balancer.interface and so answers ARP/ND for them: lbd (it adds them at start and reload, announces them with gratuitous ARP / unsolicited NA, releases removed ones) or external (lbd never adds, releases nor announces a VIP and only forwards what reaches it; for active/standby with keepalived VRRP, which moves the VIPs). Default lbd; external with balancer.bgp, where lbd is refused. See docs/scale-out.md."`
	BGP             *wireBGP       `yaml:"bgp" doc:"Scale-out: announce each VIP over BGP (embedded GoBGP) to routers that spread traffic over several balancers by ECMP. When set, lbd does not put the VIPs on the interface and answers no ARP for them. See docs/scale-out.md."`
	Notify          *wireNotify    `yaml:"notify" doc:"A command lbd runs on every backend state change (up, drain, down), as keepalived's notify scripts. See docs/admin.md."`
}

type wireNotify struct {
	Command string    `yaml:"command" doc:"Absolute path of the program to run, without a shell or arguments; it gets DSRLB_SERVICE, DSRLB_SERVER, DSRLB_ADDRESS, DSRLB_OLD_STATE, DSRLB_NEW_STATE, DSRLB_REASON, DSRLB_FALLBACK and DSRLB_TIME in its environment. Runs one at a time, in order; never blocks lbd: past 256 waiting events new ones are dropped and counted (dsrlb_notify_dropped_total)."`
	Timeout *Duration `yaml:"timeout" doc:"Time the command may run; then its whole process group is killed. 100ms-5m, default 5s."`
}

type wireBGP struct {
	ASN          *uint32       `yaml:"asn" doc:"This balancer's AS number, 1-4294967294 (required)."`
	RouterID     string        `yaml:"router_id" doc:"BGP router id, an IPv4 address; default the first IPv4 address of balancer.interface, so every balancer can share one file."`
	WithdrawWait *Duration     `yaml:"withdraw_wait" doc:"On shutdown, the time between withdrawing the VIPs and closing the sessions, so routers move traffic before the balancer goes. Default 2s."`
	Peers        []wireBGPPeer `yaml:"peers" doc:"The routers the VIPs are announced to (at least one); each VIP goes to the peers of its address family, with this balancer's own address as next hop."`
}

type wireBGPPeer struct {
	Address  string    `yaml:"address" doc:"The router's address, on balancer.interface's segment (required)."`
	ASN      *uint32   `yaml:"asn" doc:"The router's AS number (required)."`
	HoldTime *Duration `yaml:"hold_time" doc:"BGP hold time, 3s-65535s in whole seconds: a balancer silent this long loses its routes. Default 9s."`
	Password *string   `yaml:"password" doc:"TCP MD5 signature key (RFC 2385) shared with the router, 1-80 characters; keep the file readable by root only."`
}

type wireConntrack struct {
	Size       *uint32   `yaml:"size" doc:"Maximum tracked flows (LRU: the least recently used is evicted). Default 1048576."`
	TCPTimeout *Duration `yaml:"tcp_timeout" doc:"Idle time after which a TCP flow is forgotten and rescheduled. Default 15m."`
	UDPTimeout *Duration `yaml:"udp_timeout" doc:"Idle time after which a UDP flow is forgotten. Default 60s."`
}

type wireMetrics struct {
	Listen    *string `yaml:"listen" doc:"host:port of the Prometheus endpoint; \"\" turns it off. Default 127.0.0.1:9469."`
	WebConfig *string `yaml:"web_config" doc:"Absolute path of a web configuration file in the Prometheus exporter-toolkit format (tls_server_config, basic_auth_users with bcrypt hashes; what Prometheus's --web.config.file reads) that turns on TLS and/or basic authentication for the endpoint. Certificates and users are read again on every connection. Default none: plain HTTP."`
}

type wireService struct {
	Name      string        `yaml:"name" doc:"Unique name of the service: letters, digits, '.', '_' and '-', at most 32."`
	VIP       string        `yaml:"vip" doc:"The virtual IP clients connect to, IPv4 or IPv6."`
	Protocol  string        `yaml:"protocol" doc:"tcp or udp. Default tcp."`
	Ports     []int         `yaml:"ports" doc:"Destination ports 1-65535; empty or omitted means every port of the VIP."`
	Balance   string        `yaml:"balance" doc:"maglev (consistent hash of the 5-tuple), roundrobin (weighted, per new flow) or source (client address). Default maglev."`
	Check     *wireCheck    `yaml:"check" doc:"Health check applied to every server of the service."`
	Servers   []wireServer  `yaml:"servers" doc:"The backends; each must be on the balancer's L2 segment and hold the VIP on its loopback."`
	Announce  *wireAnnounce `yaml:"announce" doc:"With balancer.bgp: when and how this service's VIP is announced."`
	Fallback  []wireServer  `yaml:"fallback" doc:"Servers (same fields as servers) that take new flows only while no primary server is up (keepalived's sorry_server, HAProxy's backup): health-checked like the primaries; when a primary comes back, new flows go to the primaries and flows established on a fallback stay there until they end. See docs/admin.md."`
	OnFailure string        `yaml:"on_failure" doc:"What a failed health check does to a server: down (its flows move to other servers) or drain (it keeps its established flows and takes no new ones; keepalived's inhibit_on_failure). A server without a MAC is always down. Default down."`

	line int // of the list item, for Service.Line
}

type wireAnnounce struct {
	MinHealthy  *int     `yaml:"min_healthy" doc:"Servers that must be up for the VIP to be announced; below it the VIP is withdrawn. 0 announces whatever the checks say. Default 1. A VIP shared by several services is announced while any of them qualifies."`
	Communities []string `yaml:"communities" doc:"BGP communities (ASN:value, each 0-65535) attached to the VIP's route; services sharing a VIP must agree."`
	MED         *uint32  `yaml:"med" doc:"BGP MED (multi-exit discriminator) attached to the VIP's route; services sharing a VIP must agree."`
}

type wireCheck struct {
	Type         string    `yaml:"type" doc:"tcp (connect), http (a request, expect a status), https (http over TLS), udp (send a datagram, expect an answer), dns (a query, expect an rcode), exec (run a command, exit 0 = up) or none. Default tcp. See docs/checks.md."`
	Interval     *Duration `yaml:"interval" doc:"Time between two checks of one server. Default 2s."`
	Timeout      *Duration `yaml:"timeout" doc:"Time a check may take; less than interval. Default 1s."`
	Rise         *int      `yaml:"rise" doc:"Consecutive successes that bring a down server up. Default 2."`
	Fall         *int      `yaml:"fall" doc:"Consecutive failures that take an up server down. Default 3."`
	Port         *int      `yaml:"port" doc:"Port to check; default the service's first port (required when ports is empty)."`
	Path         *string   `yaml:"path" doc:"http, https: the path requested. Default /."`
	ExpectStatus *int      `yaml:"expect_status" doc:"http, https: the status code that means healthy. Default 200."`

	// Check types of issue 15 (https, udp, dns, exec) and the http request.
	Method             *string  `yaml:"method" doc:"http, https: the request method: GET, HEAD, POST or OPTIONS. Default GET."`
	Host               *string  `yaml:"host" doc:"http, https: the Host header (and, for https, the default sni). Default the checked address."`
	ExpectBody         *string  `yaml:"expect_body" doc:"http, https: text the first 4 KiB of the body must contain (case-sensitive). Default none: the status alone decides."`
	SNI                *string  `yaml:"sni" doc:"https: the TLS server name sent and verified. Default host when set, else none sent and the certificate is verified against the checked IP address."`
	CAFile             *string  `yaml:"ca_file" doc:"https: absolute path of a PEM file of the CA certificates the backends' certificates must chain to. Default the system's roots. lbd checks it when it loads the configuration (start, reload, lbd validate), and the checks read it again whenever it changes (a renewed CA needs no reload)."`
	InsecureSkipVerify *bool    `yaml:"insecure_skip_verify" doc:"https: true completes the TLS handshake without verifying the certificate (HAProxy's check-ssl verify none; keepalived's SSL_GET). Default false: the certificate is verified."`
	Send               *string  `yaml:"send" doc:"udp (required): the datagram sent; text where \\n, \\r, \\t, \\0, \\\\ and \\xHH are escapes (e.g. \"\\xff\\xffping\"). In YAML, write it in single quotes so the backslashes reach dsrlb."`
	Expect             *string  `yaml:"expect" doc:"udp: bytes the answer must contain, same escapes as send. Default none: any answer is up. No answer within the timeout, or an ICMP port unreachable, is down."`
	Query              *string  `yaml:"query" doc:"dns: the name asked. Default . (the root)."`
	QueryType          *string  `yaml:"query_type" doc:"dns: the record type asked: A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT or CAA. Default SOA. The query goes over the service's protocol (UDP for udp services, TCP for tcp ones)."`
	ExpectRcode        *string  `yaml:"expect_rcode" doc:"dns: the response code that means healthy: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, NOTIMP or FORMERR. Default NOERROR."`
	Command            *string  `yaml:"command" doc:"exec (required): absolute path of the program run for each check, without a shell; exit status 0 means up. It gets the target in DSRLB_SERVICE, DSRLB_SERVER, DSRLB_VIP, DSRLB_ADDRESS and DSRLB_PORT, is killed (with its process group) after timeout, and must not be writable by group or others. See docs/checks.md."`
	Args               []string `yaml:"args" doc:"exec: the arguments passed to command, each one word (no shell expansion)."`
	line               int      // of the check: key, for messages about files it names
	Via                string   `yaml:"via" doc:"tcp, http and https: vip (the check goes the way client traffic does: to the VIP, framed to the server's MAC on balancer.interface, so a server that lost the VIP on lo or listens only on its own address fails it; needs CAP_NET_RAW, see docs/health-dsr.md) or address (to the server's own address through the kernel's stack, as keepalived and HAProxy check). Default vip."`
}

type wireServer struct {
	Name    string  `yaml:"name" doc:"Name of the server, unique within its service."`
	Address string  `yaml:"address" doc:"The server's own address on the segment, same family as the VIP."`
	Weight  *int    `yaml:"weight" doc:"0-256; share of new flows relative to the others; 0 drains (keeps existing flows, takes no new ones). Default 1."`
	Check   *bool   `yaml:"check" doc:"false disables health checks for this server (always up). Default true."`
	MAC     *string `yaml:"mac" doc:"Static MAC of the server; when set, no neighbour resolution is done."`

	CheckPort    *int    `yaml:"check_port" doc:"Port this server's check uses instead of check.port (e.g. a health endpoint on its own port)."`
	CheckAddress *string `yaml:"check_address" doc:"Address this server's check uses instead of address (e.g. a management address); any family. Traffic still goes to address. A check sent there goes through the kernel's stack (as check.via: address), never the DSR path."`

	line int // of the list item, for Server.Line
}
