package state

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	s := New()
	if !s.Empty() {
		t.Fatal("new state not empty")
	}
	s.AddAddress(netip.MustParsePrefix("2001:db8::10/128"))
	s.AddAddress(netip.MustParsePrefix("203.0.113.10/32"))
	s.AddAddress(netip.MustParsePrefix("203.0.113.10/32"))
	s.RecordSysctl("net.ipv4.conf.all.arp_ignore", "0")
	s.RecordSysctl("net.ipv4.conf.all.arp_ignore", "1") // only the first value counts
	s.RecordFile("/etc/a", nil, false)
	s.RecordFile("/etc/b", []byte("old"), true)
	s.RecordFile("/etc/b", []byte("newer"), true)
	s.LoopbackUp = true
	data := s.Encode()
	back, err := Decode("st.json", data)
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Encode()) != string(data) {
		t.Errorf("round trip differs:\n%s\n%s", data, back.Encode())
	}
	if len(back.Addresses) != 2 || back.Addresses[0].String() != "203.0.113.10/32" ||
		back.Sysctls["net.ipv4.conf.all.arp_ignore"] != "0" || back.Files["/etc/a"] != nil || *back.Files["/etc/b"] != "old" {
		t.Errorf("decoded %+v", back)
	}
	back.DropAddress(netip.MustParsePrefix("203.0.113.10/32"))
	if back.HasAddress(netip.MustParsePrefix("203.0.113.10/32")) {
		t.Error("address not dropped")
	}
}

func TestDecodeErrors(t *testing.T) {
	if s, err := Decode("st.json", nil); err != nil || !s.Empty() {
		t.Errorf("empty file: %v", err)
	}
	for data, want := range map[string]string{
		"{":             "delete the file",
		`{"version":9}`: "layout version 9",
	} {
		if _, err := Decode("st.json", []byte(data)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", data, err, want)
		}
	}
}
