package caps

import (
	"os"
	"testing"
)

// TestEffective: root here has CAP_NET_ADMIN (12) in effect; anyone else
// gets a mask that parses.
func TestEffective(t *testing.T) {
	eff, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && eff&(1<<12) == 0 && os.Getenv("CI") == "true" {
		t.Errorf("CapEff %#x: root in CI without CAP_NET_ADMIN", eff)
	}
}
