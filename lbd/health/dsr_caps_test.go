package health

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/shared/config"
)

// TestDSRPathWithoutNetRaw: without CAP_NET_RAW a DSR-path check fails
// with a reason naming the capability and the way out (via: address). The
// test runs itself again under setpriv (util-linux) with CAP_NET_RAW
// dropped from the bounding set, so root's exec does not get it.
func TestDSRPathWithoutNetRaw(t *testing.T) {
	if os.Getenv("DSRLB_TEST_NO_NET_RAW") == "1" {
		p := newDSRPath(DSROptions{Interface: "lo", Neighbor: func(netip.Addr) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, 1} }})
		defer p.close()
		tg := Target{Key: "web/b1", Addr: netip.MustParseAddrPort("192.0.2.2:80"), VIP: netip.MustParseAddr("192.0.2.10"), dsr: p,
			Check: config.Check{Type: config.CheckTCP, Via: config.ViaVIP, Timeout: time.Second}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := tcpProber{addr: tg.Addr.String(), dial: dialerFor(tg)}.probe(ctx)
		if err == nil || !strings.Contains(err.Error(), "lbd needs CAP_NET_RAW (or set check.via: address)") {
			t.Fatalf("check without CAP_NET_RAW: %v, want the CAP_NET_RAW reason", err)
		}
		return
	}
	nettest.Require(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs setpriv (util-linux) to drop CAP_NET_RAW")
		}
		t.Skip("needs setpriv (util-linux) to drop CAP_NET_RAW")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw", "--",
		os.Args[0], "-test.run", "^TestDSRPathWithoutNetRaw$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "DSRLB_TEST_NO_NET_RAW=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDSRPathWithoutNetRaw") {
		t.Fatalf("under setpriv --bounding-set=-net_raw: %v\n%s", err, out)
	}
}
