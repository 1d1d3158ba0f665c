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
	Services []wireService `yaml:"services" doc:"The virtual services: one VIP, one protocol, some ports, a set of servers."`
}

type wireBalancer struct {
	Interface       string         `yaml:"interface" doc:"The NIC that receives client traffic for the VIPs; frames leave by the same NIC (one-arm)."`
	MaglevTableSize *uint32        `yaml:"maglev_table_size" doc:"Slots per Maglev lookup table; a prime, at least 10 x the servers of the largest service. Default 65537."`
	Conntrack       *wireConntrack `yaml:"conntrack" doc:"The LRU connection table that keeps established flows on their backend."`
	PinPath         *string        `yaml:"pin_path" doc:"Directory under bpffs where maps and the program link are pinned. Default /sys/fs/bpf/dsrlb."`
	Metrics         *wireMetrics   `yaml:"metrics" doc:"Prometheus metrics endpoint."`
}

type wireConntrack struct {
	Size       *uint32   `yaml:"size" doc:"Maximum tracked flows (LRU: the least recently used is evicted). Default 1048576."`
	TCPTimeout *Duration `yaml:"tcp_timeout" doc:"Idle time after which a TCP flow is forgotten and rescheduled. Default 15m."`
	UDPTimeout *Duration `yaml:"udp_timeout" doc:"Idle time after which a UDP flow is forgotten. Default 60s."`
}

type wireMetrics struct {
	Listen *string `yaml:"listen" doc:"host:port of the Prometheus endpoint; \"\" turns it off. Default 127.0.0.1:9469."`
}

type wireService struct {
	Name     string       `yaml:"name" doc:"Unique name of the service: letters, digits, '.', '_' and '-', at most 32."`
	VIP      string       `yaml:"vip" doc:"The virtual IP clients connect to, IPv4 or IPv6."`
	Protocol string       `yaml:"protocol" doc:"tcp or udp. Default tcp."`
	Ports    []int        `yaml:"ports" doc:"Destination ports 1-65535; empty or omitted means every port of the VIP."`
	Balance  string       `yaml:"balance" doc:"maglev (consistent hash of the 5-tuple), roundrobin (weighted, per new flow) or source (client address). Default maglev."`
	Check    *wireCheck   `yaml:"check" doc:"Health check applied to every server of the service."`
	Servers  []wireServer `yaml:"servers" doc:"The backends; each must be on the balancer's L2 segment and hold the VIP on its loopback."`
}

type wireCheck struct {
	Type         string    `yaml:"type" doc:"tcp (connect), http (GET, expect a status) or none. Default tcp."`
	Interval     *Duration `yaml:"interval" doc:"Time between two checks of one server. Default 2s."`
	Timeout      *Duration `yaml:"timeout" doc:"Time a check may take; less than interval. Default 1s."`
	Rise         *int      `yaml:"rise" doc:"Consecutive successes that bring a down server up. Default 2."`
	Fall         *int      `yaml:"fall" doc:"Consecutive failures that take an up server down. Default 3."`
	Port         *int      `yaml:"port" doc:"Port to check; default the service's first port (required when ports is empty)."`
	Path         *string   `yaml:"path" doc:"http only: the path requested. Default /."`
	ExpectStatus *int      `yaml:"expect_status" doc:"http only: the status code that means healthy. Default 200."`
}

type wireServer struct {
	Name    string  `yaml:"name" doc:"Name of the server, unique within its service."`
	Address string  `yaml:"address" doc:"The server's own address on the segment, same family as the VIP."`
	Weight  *int    `yaml:"weight" doc:"0-256; share of new flows relative to the others; 0 drains (keeps existing flows, takes no new ones). Default 1."`
	Check   *bool   `yaml:"check" doc:"false disables health checks for this server (always up). Default true."`
	MAC     *string `yaml:"mac" doc:"Static MAC of the server; when set, no neighbour resolution is done."`
}
