package plan

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
	"github.com/dsrlb/dsrlb/shared/config"
)

const testConfig = `services:
  - name: web
    vip: 203.0.113.10
    ports: [80]
    servers:
      - {name: me, address: 198.51.100.11}
      - {name: other, address: 198.51.100.12}
  - name: web-udp
    vip: 203.0.113.10
    protocol: udp
    ports: [80]
    servers:
      - {name: me, address: 198.51.100.11}
  - name: web6
    vip: 2001:db8::10
    ports: [80]
    servers:
      - {name: me6, address: 2001:db8:1::11}
  - name: other
    vip: 203.0.113.20
    ports: [80]
    servers: [{name: x, address: 198.51.100.99}]
`

func mustConfig(tb testing.TB) *config.Config {
	tb.Helper()
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func vipStrings(vs []VIP) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Addr.String() + "=" + strings.Join(v.Services, "+")
	}
	return out
}

func TestSelectVIPs(t *testing.T) {
	cfg := mustConfig(t)
	for _, tc := range []struct {
		name string
		sel  Selection
		want []string
		err  string
	}{
		{"mine by server address", Selection{HostAddrs: addrs("127.0.0.1", "198.51.100.11", "2001:db8:1::11")},
			[]string{"203.0.113.10=web+web-udp", "2001:db8::10=web6"}, ""},
		{"ipv6 only", Selection{HostAddrs: addrs("2001:db8:1::11")}, []string{"2001:db8::10=web6"}, ""},
		{"all", Selection{All: true}, []string{"203.0.113.10=web+web-udp", "203.0.113.20=other", "2001:db8::10=web6"}, ""},
		{"vip flag", Selection{VIPs: addrs("203.0.113.20", "203.0.113.20")}, []string{"203.0.113.20=other"}, ""},
		{"vip not in file", Selection{VIPs: addrs("192.0.2.99")}, nil, "--vip 192.0.2.99 is not the vip of any service in test.yaml"},
		{"both", Selection{VIPs: addrs("203.0.113.20"), All: true}, nil, "--vip and --all exclude each other"},
		{"none mine", Selection{HostAddrs: addrs("127.0.0.1", "fe80::1", "192.0.2.5")}, nil,
			"no service in test.yaml lists a server with one of this host's addresses (192.0.2.5): add this host to a service's servers, or name the VIPs with --vip ADDR (repeatable) or --all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SelectVIPs(cfg, tc.sel)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(vipStrings(got), tc.want) {
				t.Errorf("got %v, want %v", vipStrings(got), tc.want)
			}
		})
	}
}

func TestNoVIPsIsSentinel(t *testing.T) {
	_, err := SelectVIPs(mustConfig(t), Selection{})
	if !errors.Is(err, ErrNoVIPs) || !strings.Contains(err.Error(), "none but loopback and link-local") {
		t.Errorf("got %v", err)
	}
}

func TestInterfaceFixes(t *testing.T) {
	for _, tc := range []struct {
		ignore, announce string
		want             []string // per-interface settings planned
	}{
		{"0", "0", nil},
		{"1", "2", nil},
		{"2", "1", nil}, // stricter arp_ignore kept
		{"8", "0", nil}, // never reply: stricter, kept
		{"3", "0", []string{"net.ipv4.conf.eth0.arp_ignore=1"}}, // answers for global addresses
		{"5", "0", []string{"net.ipv4.conf.eth0.arp_ignore=1"}}, // reserved: answers like 0
		{"9", "0", []string{"net.ipv4.conf.eth0.arp_ignore=1"}},
		{"0", "3", []string{"net.ipv4.conf.eth0.arp_announce=2"}},
		{"x", "x", []string{"net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2"}},
	} {
		got := Settings([]IfaceARP{{Name: "eth0", Ignore: tc.ignore, Announce: tc.announce}})
		var per []string
		for _, s := range got[len(fixed):] {
			if s.Persist || s.Reason == "" {
				t.Errorf("per-interface setting %s: persisted or without reason", s.Key)
			}
			per = append(per, s.Key.String()+"="+s.Value)
		}
		if !slices.Equal(per, tc.want) {
			t.Errorf("ignore=%s announce=%s: got %v, want %v", tc.ignore, tc.announce, per, tc.want)
		}
	}
}

func TestFixedTable(t *testing.T) {
	want := []string{"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
		"net.ipv4.conf.default.arp_ignore=1", "net.ipv4.conf.default.arp_announce=2"}
	var got []string
	for _, s := range Settings(nil) {
		got = append(got, s.Key.String()+"="+s.Value)
		if !s.Persist || s.Reason == "" {
			t.Errorf("%s: must be persisted and give a reason", s.Key)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if Value("arp_ignore") != "1" || Value("arp_announce") != "2" || Value("rp_filter") != "" {
		t.Error("Value disagrees with the table")
	}
}

func TestDottedInterfaceKey(t *testing.T) {
	got := Settings([]IfaceARP{{Name: "eth0.100", Ignore: "3", Announce: "0"}})
	k := got[len(got)-1].Key
	if k != sysctl.Conf("eth0.100", "arp_ignore") || k.String() != "net/ipv4/conf/eth0.100/arp_ignore" {
		t.Errorf("key %#v %s", k, k)
	}
}

func TestLabels(t *testing.T) {
	v4, v6 := VIP{Addr: netip.MustParseAddr("203.0.113.10")}, VIP{Addr: netip.MustParseAddr("2001:db8::10")}
	if v4.Label() != "lo:1" || v4.Prefix().String() != "203.0.113.10/32" {
		t.Errorf("v4: %s %s", v4.Label(), v4.Prefix())
	}
	if v6.Label() != "" || v6.Prefix().String() != "2001:db8::10/128" {
		t.Errorf("v6: %s %s", v6.Label(), v6.Prefix())
	}
	// A label is 1-15 chars and must start with the interface name.
	if len(Label) > 15 || !strings.HasPrefix(Label, "lo") {
		t.Errorf("label %q is not valid for lo", Label)
	}
}

func TestBuildFiles(t *testing.T) {
	vips, err := SelectVIPs(mustConfig(t), Selection{All: true})
	if err != nil {
		t.Fatal(err)
	}
	p := Build(vips, []IfaceARP{{Name: "eth0", Ignore: "3", Announce: "0"}})
	if len(p.Files) != 2 || p.Files[0].Path != SysctlFile || p.Files[1].Path != NetworkdFile {
		t.Fatalf("files %v", p.Files)
	}
	if strings.Contains(string(p.Files[0].Content), "eth0") {
		t.Error("per-interface fixes must not be persisted")
	}
	again := Build(vips, nil)
	if string(again.Files[0].Content) != string(p.Files[0].Content) {
		t.Error("file content depends on live per-interface values; --offline would disagree with apply")
	}
	for _, f := range p.Files {
		if !strings.HasPrefix(string(f.Content), "# Written by dsrlb hostprep") {
			t.Errorf("%s: no header naming the tool", f.Path)
		}
	}
}

// The file names decide precedence: check them against the files they
// must sort after or before.
func TestFileNamesSort(t *testing.T) {
	if base(SysctlFile) <= "99-sysctl.conf" {
		t.Errorf("%s sorts before Debian's 99-sysctl.conf: its settings could be overridden", SysctlFile)
	}
	for _, other := range []string{"10-netplan-lo.network", "10-cloud-init-lo.network", "50-lo.network", "80-container-host0.network"} {
		if base(NetworkdFile) >= other {
			t.Errorf("%s sorts after %s", NetworkdFile, other)
		}
	}
}

func base(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

var update = flag.Bool("update", false, "rewrite the golden files")

// TestBuildGolden pins the files a real plan renders, the sysctl table
// included: a change to either shows in review as a golden diff.
func TestBuildGolden(t *testing.T) {
	vips, err := SelectVIPs(mustConfig(t), Selection{HostAddrs: addrs("198.51.100.11", "2001:db8:1::11")})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range Build(vips, nil).Files {
		path := filepath.Join("testdata", base(f.Path)+".golden")
		if *update {
			if err := os.WriteFile(path, f.Content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -update creates it)", err)
		}
		if string(want) != string(f.Content) {
			t.Errorf("%s differs from the plan's file (go test -update rewrites it):\n%s", path, f.Content)
		}
	}
}
