package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// referenceParse is Parse without the fast decoder: the path every
// message comes from, and what the fast decoder must agree with.
func referenceParse(name string, data []byte) (*Config, error) {
	p := newParser(name)
	root, ok := p.tree(data)
	if !ok {
		return nil, p.errs.sorted()
	}
	return p.reference(root)
}

// outcome renders a parse result for comparison: the Config as JSON (every
// exported field, as the golden files), plus the lines, or the messages.
func outcome(t testing.TB, parse func(string, []byte) (*Config, error), data []byte) string {
	t.Helper()
	cfg, err := parse("f.yaml", data)
	if err != nil {
		return "error: " + err.Error()
	}
	b, jerr := json.Marshal(cfg)
	if jerr != nil {
		t.Fatal(jerr)
	}
	return fmt.Sprintf("%s balancerLine %d", b, cfg.balancerLine)
}

// seeds are the golden files and a few shapes of the scale benchmark.
func seeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, _ := filepath.Glob(dir + "/*.yaml")
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return append(out, scaleFile(3, 2), scaleFile(1, 1))
}

// TestFastAgrees: on every seed, Parse (fast decoder first) and the
// reference path give the same Config or the same messages.
func TestFastAgrees(t *testing.T) {
	for _, data := range seeds(t) {
		got, want := outcome(t, Parse, data), outcome(t, referenceParse, data)
		if got != want {
			t.Errorf("fast and reference differ on\n%s\n--- fast\n%s\n--- reference\n%s", data, got, want)
		}
	}
}

// FuzzFastAgrees: for any input, Parse and the reference path agree.
func FuzzFastAgrees(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, want := outcome(t, Parse, data), outcome(t, referenceParse, data)
		if got != want {
			t.Fatalf("fast and reference differ on %q\n--- fast\n%s\n--- reference\n%s", data, got, want)
		}
	})
}

// TestFastAgreesOnEdges: values whose decoding depends on yaml.v3's rules
// (bases, YAML 1.1 booleans, nulls in lists, tags, anchors, merge keys):
// the fast decoder must give the same answer or leave them to the
// reference path.
func TestFastAgreesOnEdges(t *testing.T) {
	server := []string{
		"weight: 010", "weight: 0o10", "weight: 0x10", "weight: 1_0", "weight: +5", "weight: -0", "weight: 1.0",
		"weight: 1e1", "weight: '5'", "weight: ~", "weight:", "weight: 99999999999999999999", "weight: !!int 5",
		"check: yes", "check: on", "check: False", "check: 'true'", "check: ~", "check: 1",
		"mac: 02:00:00:00:00:01", "mac: ~", "mac: ''", "mac: 2001-12-14",
		"name: 123", "name: true", "name: ~", "name: !!str b", "name: &a b", "name: [b]",
		"address: 192.0.2.11", "address: '192.0.2.11'",
	}
	service := []string{
		"ports: [80, ~]", "ports: []", "ports: ~", "ports: 80", "ports: ['80']", "ports: [80, 80]", "ports: [0x50]",
		"check: {}", "check: ~", "check: {type: none}", "check: {interval: 0}", "check: {interval: 10}", "check: {interval: '1s', timeout: 500ms}",
		"check: {interval: !!str 2s}", "check: [tcp]", "check: {rise: 1.0}", "check: {type: http, path: /h, expect_status: 204}",
		"protocol: udp", "protocol: UDP", "balance: source", "balance: ~",
		"announce: {min_healthy: 1, communities: ['64496:1', ~], med: 5}", "announce: {communities: [64496:1]}",
		"servers: [{name: a, address: 192.0.2.11}, ~]",
		"<<: {protocol: udp}", "name: s\n    name: t",
	}
	balancer := []string{
		"maglev_table_size: 65537", "maglev_table_size: -1", "maglev_table_size: 4294967296", "maglev_table_size: 65537.0",
		"conntrack: {size: 1048576, tcp_timeout: 1h, udp_timeout: ~}", "conntrack: ~", "pin_path: ~", "pin_path: ''",
		"metrics: {listen: ''}", "metrics: {listen: ~, web_config: /etc/w.yml}", "vip_owner: external",
		"bgp: {asn: 64512, peers: [{address: 192.0.2.254, asn: 64513, hold_time: 9s, password: x}]}",
		"bgp: {asn: 64512, peers: ~}", "bgp: {asn: 64512, withdraw_wait: 0s, peers: [{address: 192.0.2.254, asn: 64513}]}",
		"interface: &i eth0", "unknown: 1",
	}
	file := func(b, s, srv string) []byte {
		return fmt.Appendf(nil, "balancer:\n  interface: eth0\n  %s\nservices:\n  - name: s\n    vip: 192.0.2.10\n    ports: [80]\n    %s\n    servers:\n      - name: a\n        address: 192.0.2.11\n        %s\n", b, s, srv)
	}
	var cases [][]byte
	for _, x := range server {
		cases = append(cases, file("vip_owner: lbd", "balance: maglev", x))
	}
	for _, x := range service {
		cases = append(cases, file("vip_owner: lbd", x, "weight: 1"))
	}
	for _, x := range balancer {
		cases = append(cases, file(x, "balance: maglev", "weight: 1"))
	}
	cases = append(cases,
		[]byte("x: &x {name: s, vip: 192.0.2.10, ports: [80], servers: [{name: a, address: 192.0.2.11}]}\nservices: [*x]\n"),
		[]byte("services:\n- name: s\n  vip: 192.0.2.10\n  ports: [80]\n  servers:\n  - {name: a, address: 192.0.2.11}\n"),
		[]byte("services: [{name: s, vip: 192.0.2.10, ports: [80], servers: [{name: a, address: 192.0.2.11}]}]\nbalancer: {interface: eth0}\n"),
		[]byte("balancer: ~\nservices:\n  - {name: s, vip: 192.0.2.10, ports: [80], servers: [{name: a, address: 192.0.2.11}]}\n"),
		[]byte("balancer: {}\nservices:\n  - {name: s, vip: 192.0.2.10, ports: [80], servers: [{name: a, address: 192.0.2.11}]}\n"),
		[]byte("'services':\n  - {\"name\": s, vip: 192.0.2.10, ports: [80], servers: [{name: a, address: 192.0.2.11}]}\n"),
	)
	fast := 0
	for _, data := range cases {
		got, want := outcome(t, Parse, data), outcome(t, referenceParse, data)
		if got != want {
			t.Errorf("fast and reference differ on\n%s\n--- fast\n%s\n--- reference\n%s", data, got, want)
		}
		var wf wireFile
		p := newParser("f.yaml")
		if root, ok := p.tree(data); ok && (fastDecoder{}).file(root, &wf) {
			fast++
		}
	}
	// About half are ordinary (36 of 79 when written): the fast decoder
	// must not give up on them.
	if fast < 30 {
		t.Errorf("the fast decoder took only %d of %d cases", fast, len(cases))
	}
}
