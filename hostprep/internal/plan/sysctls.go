package plan

import (
	"strconv"

	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
)

// The sysctls hostprep manages, with the reason for each. The kernel uses
// max(all, interface) for both arp_ignore and arp_announce, so "all" alone
// decides the outcome unless an interface holds a larger value, which is
// where the per-interface rules below come in.
var fixed = []Setting{
	{Key: sysctl.Conf(sysctl.All, "arp_ignore"), Value: "1", Persist: true,
		Reason: "answer ARP only for addresses of the interface the request came in on: the VIP is on lo, so no NIC answers for it"},
	{Key: sysctl.Conf(sysctl.All, "arp_announce"), Value: "2", Persist: true,
		Reason: "ARP requests use the sending NIC's own address, never the VIP: one 'who-has X tell VIP' would point X's entry for the VIP at this backend"},
	{Key: sysctl.Conf(sysctl.Default, "arp_ignore"), Value: "1", Persist: true,
		Reason: "interfaces created later (VLANs, hot-plugged NICs) start with arp_ignore=1 even if all is lowered afterwards"},
	{Key: sysctl.Conf(sysctl.Default, "arp_announce"), Value: "2", Persist: true,
		Reason: "interfaces created later start with arp_announce=2 even if all is lowered afterwards"},
}

// Per-interface reasons: only interfaces whose value makes the effective
// max(all, interface) unsafe are changed; values that are stricter than
// hostprep's are the admin's choice and kept.
const (
	reasonIfaceIgnore = "this interface's arp_ignore would win over all=1 with a mode that answers for the VIP " +
		"(3 answers for every global address, 4-7 and above 8 answer like 0); 1 is safe (2 and 8 are kept)"
	reasonIfaceAnnounce = "this interface's arp_announce above 2 wins over all=2 and the kernel treats it like 0 (any source address, the VIP included)"
)

// IfaceARP is the current ARP sysctls of one interface.
type IfaceARP struct {
	Name     string
	Ignore   string // conf/<Name>/arp_ignore
	Announce string // conf/<Name>/arp_announce
}

// Settings returns the fixed table followed by the per-interface fixes
// the current values need. Per-interface fixes are not persisted: interface
// names change across boots, and the boot-time hostprep run reapplies them.
func Settings(ifaces []IfaceARP) []Setting {
	out := append([]Setting(nil), fixed...)
	for _, i := range ifaces {
		if !safeIgnore(i.Ignore) {
			out = append(out, Setting{Key: sysctl.Conf(i.Name, "arp_ignore"), Value: "1", Reason: reasonIfaceIgnore})
		}
		if !safeAnnounce(i.Announce) {
			out = append(out, Setting{Key: sysctl.Conf(i.Name, "arp_announce"), Value: "2", Reason: reasonIfaceAnnounce})
		}
	}
	return out
}

// Value is what hostprep sets param (arp_ignore or arp_announce) to, on
// "all", "default" or an interface alike.
func Value(param string) string {
	for _, s := range fixed {
		if s.Key.Param == param {
			return s.Value
		}
	}
	return ""
}

// safeIgnore: with all=1, max(all, v) must be 1 (v 0 or 1), 2 (reply only
// within the sender's subnet, stricter) or 8 (never reply).
func safeIgnore(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && (n <= 2 || n == 8)
}

// safeAnnounce: with all=2, max(all, v) is 2 unless v is above 2.
func safeAnnounce(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n <= 2
}
