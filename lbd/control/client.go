package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ErrNoDaemon means nothing listens on the socket path: no lbd runs for
// that data plane (or one too old to have a control socket).
var ErrNoDaemon = errors.New("no lbd answers")

// Call sends req to the daemon at path and waits for its answer until ctx
// ends. The error is about the exchange; the daemon's verdict is in the
// Response (see Response.Err).
func Call(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Response{}, fmt.Errorf("%w on %s: %w", ErrNoDaemon, path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	b, err := encode(req)
	if err != nil {
		return Response{}, err
	}
	if _, err := c.Write(b); err != nil {
		return Response{}, fmt.Errorf("send %s to lbd: %w", req.Command, err)
	}
	var resp Response
	if err := json.NewDecoder(io.LimitReader(c, maxLine)).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Response{}, fmt.Errorf("read lbd's answer to %s: %w", req.Command, err)
	}
	return resp, nil
}
