package config

import (
	"fmt"
	"strings"
	"testing"
)

// capacityConfig renders services of ports ports each (0: every port) and
// servers servers each, every service on its own VIP and every server on
// its own address (2001:db8::/32), so that counts reach the data plane's
// limits without breaking any other rule.
func capacityConfig(services, ports, servers int) string {
	var b strings.Builder
	b.WriteString("balancer:\n  interface: eth0\n  maglev_table_size: 131071\nservices:\n")
	for i := range services {
		fmt.Fprintf(&b, "  - name: s%d\n    vip: \"2001:db8:ffff::%x\"\n    protocol: udp\n    check: {type: none}\n", i, i+1)
		if ports > 0 {
			b.WriteString("    ports: [")
			for p := range ports {
				if p > 0 {
					b.WriteString(", ")
				}
				fmt.Fprint(&b, p+1)
			}
			b.WriteString("]\n")
		}
		b.WriteString("    servers:\n")
		for j := range servers {
			fmt.Fprintf(&b, "      - {name: b%d, address: \"2001:db8:%x::%x\", mac: \"02:00:00:00:00:01\"}\n", j, i, j+1)
		}
	}
	return b.String()
}

// TestCapacity: a file whose services together need more (vip, protocol,
// port) entries or backend ids than the data plane has is refused by
// validation, naming the count, the limit and what to do, while the limit
// itself is accepted; before, such a file passed `lbd validate` and failed
// at Apply with the kernel's "argument list too long".
func TestCapacity(t *testing.T) {
	for _, c := range []struct {
		name                     string
		services, ports, servers int
		want                     string // "": valid
	}{
		{"service keys at the limit", 4, MaxServiceKeys / 4, 1, ""},
		{"one service key more", 5, MaxServiceKeys/5 + 1, 1, fmt.Sprintf("%d (vip, protocol, port) entries over all services, at most %d fit the data plane", 5*(MaxServiceKeys/5+1), MaxServiceKeys)},
		{"all-ports services are one key each", 300, 0, 1, ""},
		{"backends at the limit", 7, 0, MaxBackends / 7, ""},
		{"backends over the limit", 7, 0, MaxServers, fmt.Sprintf("%d servers and fallbacks over all services, at most %d fit the data plane", 7*MaxServers, MaxBackends)},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("cap.yaml", []byte(capacityConfig(c.services, c.ports, c.servers)))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), "cap.yaml:4: services: "+c.want)):
				t.Fatalf("got %v\nwant a line cap.yaml:4: services: %s", err, c.want)
			}
		})
	}
}

// TestCapacityDocumented: the reference (README) states the limits
// validation enforces, which a struct tag cannot take from the constants.
func TestCapacityDocumented(t *testing.T) {
	ref := Reference()
	for _, n := range []int{MaxServices, MaxServiceKeys, MaxBackends} {
		if !strings.Contains(ref, fmt.Sprintf(" %d ", n)) && !strings.Contains(ref, fmt.Sprintf(" %d;", n)) {
			t.Errorf("the configuration reference does not state the limit %d", n)
		}
	}
}
