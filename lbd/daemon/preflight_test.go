package daemon

import (
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/shared/config"
)

func TestCheckInterfaceListsExisting(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`
balancer: {interface: nosuch9}
services:
  - name: web
    vip: 192.0.2.10
    ports: [80]
    servers:
      - {name: a, address: 192.0.2.11}
      - {name: b, address: 192.0.2.12}
`))
	if err != nil {
		t.Fatal(err)
	}
	err = checkInterface(cfg)
	if err == nil {
		t.Fatal("unknown interface accepted")
	}
	msg := err.Error()
	for _, want := range []string{"t.yaml", `"nosuch9": no such interface`, "lo"} {
		if !strings.Contains(msg, want) {
			t.Errorf("no %q in %q", want, msg)
		}
	}
	if strings.Count(msg, "\n") != 0 || strings.Contains(msg, "Link not found") {
		t.Errorf("want one line without netlink's raw error: %q", msg)
	}
}

// TestMissingNetRaw: without CAP_NET_RAW preflight names it and says what
// needs it (the DSR-path checks among them).
func TestMissingNetRaw(t *testing.T) {
	all := uint64(1<<39 | 1<<12 | 1<<38 | 1<<13)
	if err := missingCaps(all); err != nil {
		t.Fatalf("all capabilities: %v", err)
	}
	err := missingCaps(all &^ (1 << 13))
	if err == nil {
		t.Fatal("CAP_NET_RAW missing and accepted")
	}
	for _, want := range []string{"lacks CAP_NET_RAW", "check.via: vip", "AmbientCapabilities"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in %q", want, err)
		}
	}
}
