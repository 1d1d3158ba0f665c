package daemon

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dsrlb/dsrlb/lbd/vip"
)

// VIPRecord is what lbd keeps in Options.VIPRecord: the VIPs it added to
// the interface (so `lbd detach` releases exactly those, also on kernels
// without IFA_PROTO, where the address mark is not kept) and the VIPs it
// did not take because another host answers for them, or not yet because
// taking them failed (for `lbd status`). Only Added is what lbd detach
// acts on. A reader older than Untaken ignores it (it shows no pending
// VIP); a record written before it has none.
type VIPRecord struct {
	Interface string        `json:"interface"`
	Added     []netip.Addr  `json:"added"`
	Conflicts []VIPConflict `json:"conflicts,omitempty"`
	// Untaken are the VIPs lbd failed to take and retries (retryVIPs).
	Untaken []VIPUntaken `json:"untaken,omitempty"`
	Updated time.Time    `json:"updated"`
}

// VIPConflict is a VIP not taken: MAC answered the probe for it.
type VIPConflict struct {
	VIP netip.Addr `json:"vip"`
	MAC string     `json:"mac"`
}

// VIPUntaken is a VIP lbd has not taken yet: taking it failed with Error
// at Since, and the running lbd tries again at NextTry (no traffic is
// drawn to it meanwhile).
type VIPUntaken struct {
	VIP     netip.Addr `json:"vip"`
	Error   string     `json:"error"`
	Since   time.Time  `json:"since"`
	NextTry time.Time  `json:"next_try"`
}

// ReadVIPRecord reads a record; a missing file is an empty record.
func ReadVIPRecord(path string) (VIPRecord, error) {
	var r VIPRecord
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// recordVIPs updates the record: added joins it, released leaves it,
// conflicts replaces the list of VIPs not taken, and the VIPs awaiting a
// retry are d.untaken's. Written atomically (temp + rename) so a reader
// never sees half a file.
func (d *Daemon) recordVIPs(added, released []netip.Addr, conflicts []vip.Conflict) {
	d.mu.Lock()
	d.conflicts = conflicts
	untaken := slices.Clone(d.untaken)
	d.mu.Unlock()
	path := d.opts.VIPRecord
	if path == "" {
		return
	}
	r, _ := ReadVIPRecord(path)
	r.Interface = d.cfg.Balancer.Interface
	for _, a := range added {
		if !slices.Contains(r.Added, a) {
			r.Added = append(r.Added, a)
		}
	}
	r.Added = slices.DeleteFunc(r.Added, func(a netip.Addr) bool { return slices.Contains(released, a) })
	r.Conflicts = nil
	for _, c := range conflicts {
		r.Conflicts = append(r.Conflicts, VIPConflict{VIP: c.VIP, MAC: c.MAC.String()})
	}
	r.Untaken = untaken
	r.Updated = d.host().now().UTC()
	b, _ := json.MarshalIndent(r, "", "  ")
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	err := os.WriteFile(tmp, append(b, '\n'), 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		d.log.Warn("cannot record the VIPs lbd added; lbd detach falls back to the address mark (IFA_PROTO, kernel >= 5.18)", "file", path, "err", err)
	}
}

// releaseVIPs removes VIPs lbd added: those in the record whether or not
// the kernel kept lbd's mark (it drops it before Linux 5.18), the others
// only when marked.
func (d *Daemon) releaseVIPs(ifname string, vips []netip.Addr) error {
	var rec VIPRecord
	if d.opts.VIPRecord != "" {
		rec, _ = ReadVIPRecord(d.opts.VIPRecord)
	}
	var recorded, other []netip.Addr
	for _, v := range vips {
		if slices.Contains(rec.Added, v) {
			recorded = append(recorded, v)
		} else {
			other = append(other, v)
		}
	}
	return errors.Join(d.host().vips.ReleaseAdded(ifname, recorded, d.log), d.host().vips.Release(ifname, other, d.log))
}

// noteUntaken makes vips the VIPs awaiting a retry (d.vipsUntaken), take
// failing with err; for the record, status and metrics (d.untaken) each
// keeps the time it first failed, and the next try is vipRetryAt, or the
// next attach check when that is past. The record is rewritten whenever
// a VIP is or was pending (a retry moves NextTry); otherwise not at all.
func (d *Daemon) noteUntaken(vips []netip.Addr, err error) {
	d.vipsUntaken = vips
	now := d.host().now().UTC()
	next := d.vipRetryAt.UTC()
	if !next.After(now) {
		next = now.Add(d.host().attachEvery)
	}
	d.mu.Lock()
	prev := d.untaken
	var list []VIPUntaken
	for _, a := range vips {
		u := VIPUntaken{VIP: a, Since: now, NextTry: next}
		if err != nil {
			u.Error = err.Error()
		}
		if i := slices.IndexFunc(prev, func(p VIPUntaken) bool { return p.VIP == a }); i >= 0 {
			u.Since = prev[i].Since
		}
		list = append(list, u)
	}
	d.untaken = list
	conflicts := d.conflicts
	d.mu.Unlock()
	if len(prev) > 0 || len(list) > 0 {
		d.recordVIPs(nil, nil, conflicts)
	}
}

// dropStaleVIPNotes clears the conflicts and pending VIPs an earlier lbd
// recorded when this one takes no VIPs (BGP, or vip_owner external):
// nothing would rewrite them, and `lbd status` would show them for ever.
// What was added stays recorded, for `lbd detach`.
func (d *Daemon) dropStaleVIPNotes() {
	if d.cfg.Balancer.TakesVIPs() || d.opts.VIPRecord == "" {
		return
	}
	if r, err := ReadVIPRecord(d.opts.VIPRecord); err == nil && (len(r.Untaken) > 0 || len(r.Conflicts) > 0) {
		d.recordVIPs(nil, nil, nil)
	}
}
