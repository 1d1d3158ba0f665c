package daemon

import "errors"

// ErrNoBPFFS means the pin path is not on a bpf filesystem: nothing lbd
// can fix by starting again, so the unit must not restart it in a loop.
var ErrNoBPFFS = errors.New("not bpffs")
