package datapath

import (
	"errors"
	"fmt"
)

// ErrCapacity is an Apply the maps have no room for: it would fail the same
// way on every retry, so a reload is refused up front (Fits).
var ErrCapacity = errors.New("not enough room in the data plane")

// Fits reports whether Apply(services) finds the ids it needs: a backend
// or service id of what leaves is freed only once no table names it, so
// the ones kept and the new ones must all fit at once. Service keys need
// no check: Apply deletes leaving keys first when both would not fit.
func (d *Datapath) Fits(services []Service) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	newSvcs, newBes := 0, 0
	claimed := map[uint32]bool{}
	for i := range services {
		id, ok := d.matchedID(&services[i], claimed)
		st := d.state.services[id]
		if !ok || st == nil {
			newSvcs++
			newBes += len(services[i].Backends)
			continue
		}
		for _, b := range services[i].Backends {
			if _, ok := st.backends[b.Addr]; !ok {
				newBes++
			}
		}
	}
	const twoSteps = "reload in two steps: first a configuration without what leaves, then one with what is new"
	if used, room := len(d.state.backends), int(d.opts.MaxBackends)-1; used+newBes > room {
		return fmt.Errorf("%w: %d backends in use and %d new need %d backend ids at once, the data plane has %d (a leaving backend frees its id only after the change); %s",
			ErrCapacity, used, newBes, used+newBes, room, twoSteps)
	}
	if used, room := len(d.state.services), int(d.opts.MaxServices); used+newSvcs > room {
		return fmt.Errorf("%w: %d services in use and %d new need %d service ids at once, the data plane has %d; %s",
			ErrCapacity, used, newSvcs, used+newSvcs, room, twoSteps)
	}
	return nil
}

// matchedID is the id of the service Apply keeps for s: the owner of one
// of its keys not claimed by an earlier service of the same Apply.
func (d *Datapath) matchedID(s *Service, claimed map[uint32]bool) (uint32, bool) {
	for _, k := range s.keys() {
		if id, ok := d.state.keyOwner[k]; ok && !claimed[id] {
			claimed[id] = true
			return id, true
		}
	}
	return 0, false
}
