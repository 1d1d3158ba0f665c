package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/shared/config"
)

// openControl listens on Options.ControlSocket (when set) before start, so
// a reload asked for while lbd starts waits for it rather than finding no
// daemon. Requests that change state go through the loop (reloadReqs), the
// one goroutine that changes the running configuration.
func (d *Daemon) openControl() (func(), error) {
	d.reloadReqs = make(chan chan error)
	d.openAdmin() // admin.go
	if d.opts.ControlSocket == "" {
		return d.closeAdmin, nil
	}
	s, err := control.Listen(d.opts.ControlSocket, d.handleControl, d.log)
	if err != nil {
		d.closeAdmin()
		return nil, err
	}
	return func() { s.Close(); d.closeAdmin() }, nil
}

func (d *Daemon) handleControl(ctx context.Context, req control.Request) control.Response {
	switch req.Command {
	case control.CmdPing:
		return control.Response{OK: true, Message: "lbd " + d.opts.Version}
	case control.CmdStatus:
		return control.Response{OK: true, Message: d.statusNow()}
	case control.CmdReload:
		return d.reloadVerdict(ctx)
	case control.CmdLive:
		return d.liveResponse()
	case control.CmdSet:
		return d.handleSet(req, ctx.Done()) // admin.go
	}
	return control.Response{Message: fmt.Sprintf("unknown command %q: this lbd (%s) knows %s, %s, %s, %s and %s",
		req.Command, d.opts.Version, control.CmdPing, control.CmdReload, control.CmdStatus, control.CmdLive, control.CmdSet)}
}

// reloadVerdict asks the loop to reload and waits for the outcome.
func (d *Daemon) reloadVerdict(ctx context.Context) control.Response {
	reply := make(chan error, 1)
	select {
	case d.reloadReqs <- reply:
	case <-ctx.Done():
		return control.Response{Message: "lbd is stopping: reload not done"}
	}
	var err error
	select {
	case err = <-reply:
	case <-ctx.Done():
		return control.Response{Message: "lbd is stopping: reload outcome unknown"}
	}
	if err == nil {
		d.mu.Lock()
		n, m := len(d.cfg.Services), d.cfg.ServerCount()
		d.mu.Unlock()
		return control.Response{OK: true, Message: fmt.Sprintf("configuration reloaded: %d services, %d servers", n, m)}
	}
	return control.Response{Message: "reload rejected; the running configuration stays", Errors: reasons(err)}
}

// reasons splits err into one line per problem; config errors keep their
// file:line.
func reasons(err error) []string {
	var es config.Errors
	if errors.As(err, &es) {
		out := make([]string, 0, len(es))
		for _, e := range es {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// statusNow is the last status line published, or "starting".
func (d *Daemon) statusNow() string {
	if s, _ := d.status.Load().(string); s != "" {
		return s
	}
	return "starting"
}
