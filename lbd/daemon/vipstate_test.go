package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestVIPRecordUntakenCompat: a record written before Untaken existed
// reads with none pending and its added VIPs kept (lbd detach releases
// those); a record with nothing pending is written without the key, as
// before, so readers of either age see the same file.
func TestVIPRecordUntakenCompat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lbd.vips")
	old := `{"interface": "eth0", "added": ["192.0.2.10"], "conflicts": [{"vip": "192.0.2.20", "mac": "02:00:00:00:00:99"}], "updated": "2026-12-01T12:00:00Z"}`
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := ReadVIPRecord(path)
	if err != nil || len(rec.Untaken) != 0 || !slices.Equal(rec.Added, []netip.Addr{vipWeb}) || len(rec.Conflicts) != 1 {
		t.Fatalf("old record read as %+v, %v", rec, err)
	}
	d := newTestDaemon(t, strings.ReplaceAll(lifeConfig, "PIN", "/sys/fs/bpf/dsrlb-test"))
	d.sys, d.opts.VIPRecord = newFakeHost().system(), path
	d.recordVIPs(nil, nil, nil)
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "untaken") || !strings.Contains(string(b), "192.0.2.10") {
		t.Errorf("record with nothing pending:\n%s\nwant the added VIP kept and no untaken key", b)
	}
	d.vipRetryAt = d.host().now().Add(8e9)
	d.noteUntaken([]netip.Addr{vipAPI}, errFake)
	if rec, _ := ReadVIPRecord(path); len(rec.Untaken) != 1 || rec.Untaken[0].Error != "fake failure" || !rec.Untaken[0].NextTry.Equal(d.vipRetryAt) {
		t.Errorf("record %+v: want api pending with the error and the retry time", rec)
	}
	d.noteUntaken(nil, nil)
	if rec, _ := ReadVIPRecord(path); len(rec.Untaken) != 0 || !slices.Equal(rec.Added, []netip.Addr{vipWeb}) {
		t.Errorf("record %+v: want nothing pending, the added VIP kept", rec)
	}
}
