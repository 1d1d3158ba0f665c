// Package control is lbd's runtime command channel: a unix socket in
// /run/dsrlb, one per data plane, through which commands such as `lbd
// reload` reach the running daemon and wait for its answer. Signals carry
// no answer; a reload that is rejected must fail the command (and so
// `systemctl reload lbd`) that asked for it.
//
// The protocol is JSON lines: a client writes one Request, the daemon
// writes one Response, and closes. New commands add a Command name and,
// if they need them, fields to Request and Response; a daemon answers an
// unknown command with an error naming it, so an older daemon fails
// clearly rather than silently.
//
// Only root may talk to it: the socket is mode 0600 in a root-owned
// directory, and the daemon checks each peer's credentials (SO_PEERCRED).
package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/dsrlb/dsrlb/internal/runfiles"
)

// Commands the daemon answers.
const (
	CmdPing   = "ping"   // liveness; Message is the daemon's version
	CmdReload = "reload" // re-read the configuration; OK false lists why it was rejected
	CmdStatus = "status" // Message is the daemon's one-line status
	// CmdLive: Data is a statusjson.Live, what the pinned maps do not keep
	// (state since, ARP guard findings), for `lbd status`.
	CmdLive = "live"
	// CmdSet changes one server at run time (lbd set): Service, Server,
	// Action (drain, maint, ready or weight) and, for weight, Weight.
	CmdSet = "set"
)

// Actions of CmdSet.
const (
	SetDrain  = "drain"  // keep established flows, take no new ones
	SetMaint  = "maint"  // out of rotation like a failed server: flows move
	SetReady  = "ready"  // back to what the configuration says
	SetWeight = "weight" // replace the configured weight with Weight
)

// Request is one command.
type Request struct {
	Command string `json:"command"`
	// CmdSet only.
	Service string `json:"service,omitempty"`
	Server  string `json:"server,omitempty"`
	Action  string `json:"action,omitempty"`
	Weight  *int   `json:"weight,omitempty"`
}

// Response is the daemon's answer.
type Response struct {
	OK      bool     `json:"ok"`
	Message string   `json:"message,omitempty"`
	Errors  []string `json:"errors,omitempty"` // one line each; config errors as file:line: text
	// Data is a command's structured answer (CmdLive: a statusjson.Live).
	Data json.RawMessage `json:"data,omitempty"`
}

// Err is nil for an OK response, or an error carrying every reason.
func (r Response) Err() error {
	if r.OK {
		return nil
	}
	msg := r.Message
	if len(r.Errors) > 0 {
		msg += "\n  " + strings.Join(r.Errors, "\n  ")
	}
	return errors.New(strings.TrimSpace(msg))
}

// SocketPath is the control socket of the lbd serving the data plane pinned
// at pinPath, next to its PID file: several lbd (tests, namespaces) never
// share one.
func SocketPath(runDir, pinPath string) string { return runfiles.In(runDir, pinPath).Control }

// maxLine bounds a request or response line: a client cannot make the
// daemon buffer without limit.
const maxLine = 1 << 20

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	return append(b, '\n'), nil
}
