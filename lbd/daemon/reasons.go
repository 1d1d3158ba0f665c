package daemon

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
)

// The reasons file: why each backend is out of rotation, as the running
// daemon last decided (desired's `why`, with the failing check's own
// error), so `lbd status`, which reads the pinned maps, can say more than
// "health check failing". Written only when the reasons change.

// ReadReasons reads a reasons file: backend key -> reason. A missing file
// is no reasons.
func ReadReasons(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r map[string]string
	return r, json.Unmarshal(b, &r)
}

// recordReasons writes reasons when they differ from the last applied
// ones (d.out), atomically (temp + rename). Loop only.
func (d *Daemon) recordReasons(reasons why) {
	path := d.opts.ReasonsFile
	if path == "" || (d.out != nil && maps.Equal(d.out, reasons) && !d.reasonsUnwritten) {
		return
	}
	b, _ := json.MarshalIndent(reasons, "", "  ")
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	err := os.WriteFile(tmp, append(b, '\n'), 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil && !d.reasonsUnwritten {
		d.log.Warn("cannot record why backends are out of rotation; lbd status shows less until it can (retried at every change of the data plane)", "file", path, "err", err)
	}
	d.reasonsUnwritten = err != nil
}
