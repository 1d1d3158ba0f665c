package importer

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/shared/config"
)

// TestInhibitOnSomeServers: dsrlb's on_failure is per service, so
// inhibit_on_failure on some real servers only drains all, and says so.
func TestInhibitOnSomeServers(t *testing.T) {
	src := `virtual_server 192.0.2.10 80 {
    lb_algo rr
    lb_kind DR
    real_server 192.0.2.11 80 {
        inhibit_on_failure
    }
    real_server 192.0.2.12 80 {
    }
    sorry_server 192.0.2.11 80
}
`
	res, err := Import("keepalived", "some.conf", []byte(src), Options{Interface: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	res.Report(&report)
	for _, want := range []string{
		"some.conf:5: inhibit_on_failure: on_failure is per service in dsrlb: drain now applies to every server of the service, not only to 192.0.2.11",
		"some.conf:9: sorry server sorry: not carried: it is also a real server of the service",
	} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, report.String())
		}
	}
	if res.Invalid != nil {
		t.Fatalf("output invalid: %v", res.Invalid)
	}
	cfg, err := config.Parse("out", res.YAML)
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Services[0]; s.OnFailure != config.FailDrain || s.Primaries() != len(s.Servers) {
		t.Errorf("on_failure %q, %d primaries of %d servers; want drain and no fallback", s.OnFailure, s.Primaries(), len(s.Servers))
	}
}
