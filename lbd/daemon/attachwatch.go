package daemon

import "time"

// AttachCheckInterval is how often lbd checks that its program is still
// attached: someone may detach the tcx link (`bpftool link detach`),
// update it to another program, or delete the cls_bpf filter, and the
// interface would then go on without a balancer while lbd looks healthy.
const AttachCheckInterval = 2 * time.Second

// watchAttach notices a detached or replaced program, says so (ERROR log,
// dsrlb_datapath_attached 0) and attaches it again.
func (d *Daemon) watchAttach() {
	err := d.dp.CheckAttached()
	if err == nil {
		return
	}
	d.mu.Lock()
	first := d.detached == ""
	d.detached = err.Error()
	d.mu.Unlock()
	if first {
		d.log.Error("data plane program not attached as lbd left it: re-attaching", "interface", d.cfg.Balancer.Interface, "err", err)
	}
	if err := d.dp.Reattach(); err != nil {
		if first || err.Error() != d.reattachErr { // once per distinct failure, not every tick
			d.log.Error("re-attaching the data plane failed; retrying (after lbd detach --force, restart lbd)", "interface", d.cfg.Balancer.Interface, "err", err)
		}
		d.reattachErr = err.Error()
		return
	}
	d.reattachErr = ""
	if err := d.dp.CheckAttached(); err != nil {
		d.log.Error("re-attached data plane still not attached; retrying", "err", err)
		return
	}
	d.mu.Lock()
	d.detached = ""
	d.repairs++
	d.mu.Unlock()
	d.log.Info("data plane re-attached", "interface", d.cfg.Balancer.Interface)
}
