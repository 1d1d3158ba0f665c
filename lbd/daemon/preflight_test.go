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
