// Package render writes the persistence files hostprep owns: a sysctl.d
// file for the ARP settings and a systemd-networkd .network file for lo.
// Output depends only on its input (no time, no host name), so rendering
// the same plan twice gives the same bytes and apply can skip the write.
package render

import (
	"fmt"
	"net/netip"
	"strings"
)

// Header opens every file hostprep writes: it names the tool and how to
// undo, for the admin who finds the file.
const Header = `# Written by dsrlb hostprep. Do not edit: "hostprep apply" rewrites this file,
# "hostprep check" reports edits and "hostprep remove" deletes it.
`

// Sysctl is one line of the sysctl.d file.
type Sysctl struct {
	Key    string // as sysctl.d writes it
	Value  string
	Reason string // one line, becomes the comment above the setting
}

// SysctlD renders the sysctl.d file.
func SysctlD(settings []Sysctl) []byte {
	var b strings.Builder
	b.WriteString(Header)
	b.WriteString(`#
# Keeps this Direct Server Return backend silent on ARP for the VIPs it holds on lo.
# The name sorts after Debian's 99-sysctl.conf: for each key the last file read wins.
`)
	for _, s := range settings {
		fmt.Fprintf(&b, "\n# %s\n%s = %s\n", s.Reason, s.Key, s.Value)
	}
	return []byte(b.String())
}

// Address is one VIP of the .network file.
type Address struct {
	Prefix netip.Prefix
	Label  string // IPv4 only
}

// Networkd renders the .network file for lo. networkd removes addresses it
// does not know from a link it manages, so the file lists every VIP;
// KeepConfiguration=static keeps static addresses added by hand or by a
// newer hostprep run until the next boot. It must not list the kernel's own
// 127.0.0.1/8 and ::1/128: networkd 252 keeps localhost on lo by itself,
// and asked to configure it re-requests the kernel's address in a loop
// ("Numerical result out of range") until lo ends "failed" in most boots.
func Networkd(vips []Address) []byte {
	var b strings.Builder
	b.WriteString(Header)
	b.WriteString(`#
# Puts the dsrlb VIPs on lo at boot. Named to sort before other .network files:
# networkd uses the first file that matches a link.

[Match]
Name=lo

[Network]
KeepConfiguration=static

[Link]
RequiredForOnline=no
`)
	for _, v := range vips {
		fmt.Fprintf(&b, "\n[Address]\nAddress=%s\n", v.Prefix)
		if v.Prefix.Addr().Is4() {
			fmt.Fprintf(&b, "Label=%s\n", v.Label)
		} else {
			b.WriteString("DuplicateAddressDetection=none\n")
		}
	}
	return []byte(b.String())
}
