package render

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the rendered file (go test -update rewrites it):\n%s", path, got)
	}
}

func TestSysctlD(t *testing.T) {
	golden(t, "99-zz-dsrlb-arp.conf", SysctlD([]Sysctl{
		{Key: "net.ipv4.conf.all.arp_ignore", Value: "1", Reason: "why one"},
		{Key: "net.ipv4.conf.all.arp_announce", Value: "2", Reason: "why two"},
	}))
}

func TestNetworkd(t *testing.T) {
	golden(t, "05-dsrlb-lo.network", Networkd([]Address{
		{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Label: "lo:1"},
		{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Label: "lo:1"},
		{Prefix: netip.MustParsePrefix("2001:db8::10/128")},
	}))
	golden(t, "05-dsrlb-lo-empty.network", Networkd(nil))
}

// TestNetworkdOnlyVIPs: listing the kernel's loopback addresses made
// networkd 252 fail lo in most boots (issue 13); only VIPs may appear.
func TestNetworkdOnlyVIPs(t *testing.T) {
	out := string(Networkd([]Address{{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Label: "lo:1"}}))
	for _, bad := range []string{"127.0.0.1", "::1/128", "Scope=host"} {
		if strings.Contains(out, bad) {
			t.Errorf("networkd file names %q; it must list only the VIPs:\n%s", bad, out)
		}
	}
	if got := strings.Count(out, "[Address]"); got != 1 {
		t.Errorf("networkd file has %d [Address] sections for 1 VIP:\n%s", got, out)
	}
}
