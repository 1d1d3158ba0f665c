package sysctl

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestKeyString(t *testing.T) {
	for _, tc := range []struct {
		key  Key
		want string
	}{
		{Conf(All, "arp_ignore"), "net.ipv4.conf.all.arp_ignore"},
		{Conf("eth0", "arp_announce"), "net.ipv4.conf.eth0.arp_announce"},
		// go-sysctl would turn the dots of eth0.100 into slashes.
		{Conf("eth0.100", "arp_ignore"), "net/ipv4/conf/eth0.100/arp_ignore"},
	} {
		if got := tc.key.String(); got != tc.want {
			t.Errorf("%#v: %s, want %s", tc.key, got, tc.want)
		}
		back, err := ParseKey(tc.want)
		if err != nil || back != tc.key {
			t.Errorf("ParseKey(%s) = %#v, %v", tc.want, back, err)
		}
	}
	for _, bad := range []string{"", "net.ipv4.conf.", "net.ipv6.conf.all.x", "net/ipv4/conf/eth0", "net/ipv4/conf/a/b/c"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// fakeProc builds a /proc/sys-like tree, so both paths (go-sysctl and
// direct files for dotted names) run without privileges.
func fakeProc(t *testing.T, ifaces ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, i := range ifaces {
		d := filepath.Join(dir, "net", "ipv4", "conf", i)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "arp_ignore"), []byte("0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestKernel(t *testing.T) {
	dir := fakeProc(t, All, Default, "eth0", "eth0.100")
	k, err := NewKernel(dir)
	if err != nil {
		t.Fatal(err)
	}
	names, err := k.Interfaces()
	if err != nil || !slices.Equal(names, []string{"eth0", "eth0.100"}) {
		t.Fatalf("interfaces %v, %v", names, err)
	}
	for _, name := range []string{All, "eth0", "eth0.100"} {
		key := Conf(name, "arp_ignore")
		if err := k.Set(key, "1"); err != nil {
			t.Fatal(err)
		}
		if v, err := k.Get(key); err != nil || v != "1" {
			t.Errorf("%s = %q, %v", key, v, err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "net/ipv4/conf", name, "arp_ignore"))
		if string(b) != "1" {
			t.Errorf("%s: file holds %q", key, b)
		}
	}
	if _, err := k.Get(Conf("gone", "arp_ignore")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing interface: %v, want fs.ErrNotExist", err)
	}
	if _, err := NewKernel(filepath.Join(dir, "nope")); err == nil {
		t.Error("missing directory accepted")
	}
}
