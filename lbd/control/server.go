package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Handler answers one request. It runs on the connection's goroutine and
// should honour ctx, which ends when the server closes.
type Handler func(ctx context.Context, req Request) Response

// Server accepts control connections on a unix socket.
type Server struct {
	path string
	ln   *net.UnixListener
	h    Handler
	log  *slog.Logger
	// allow decides whether a peer may talk to the daemon; root only.
	allow func(uid uint32) bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ErrInUse means another live process answers on the socket path.
var ErrInUse = errors.New("control socket in use")

// Listen creates the socket at path (mode 0600, its directory 0755 if
// created) and serves h until Close. A socket left by a dead lbd is
// replaced; one that still answers is refused (ErrInUse).
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	return listen(path, h, log, func(uid uint32) bool { return uid == 0 })
}

func listen(path string, h Handler, log *slog.Logger, allow func(uint32) bool) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create control socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	// The umask makes the socket 0600 from its creation: no window in
	// which another user could connect.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{path: path, ln: ln, h: h, log: log, ctx: ctx, cancel: cancel, allow: allow}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func removeStale(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s answers: another lbd runs for this data plane", ErrInUse, path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale control socket: %w", err)
	}
	return nil
}

// Close stops accepting, cancels running handlers, waits for them and
// removes the socket.
func (s *Server) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Error("control socket stopped accepting", "path", s.path, "err", err)
			}
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

func (s *Server) serve(c *net.UnixConn) {
	defer c.Close()
	go func() { // a cancelled server unblocks reads and writes
		<-s.ctx.Done()
		c.SetDeadline(time.Now())
	}()
	resp := s.answer(c)
	b, err := encode(resp)
	if err == nil {
		_, err = c.Write(b)
	}
	if err != nil && s.ctx.Err() == nil {
		s.log.Warn("control: answer not delivered", "err", err)
	}
}

func (s *Server) answer(c *net.UnixConn) Response {
	// The request is read before the peer is judged, so that a refused
	// client gets the answer rather than a broken pipe.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req Request
	if err := json.NewDecoder(io.LimitReader(c, maxLine)).Decode(&req); err != nil {
		return Response{Message: "control: read request: " + err.Error()}
	}
	c.SetReadDeadline(time.Time{})
	uid, err := peerUID(c)
	if err != nil {
		return Response{Message: "control: " + err.Error()}
	}
	if !s.allow(uid) {
		s.log.Warn("control: refused a connection from a user other than root", "uid", uid, "command", req.Command)
		return Response{Message: fmt.Sprintf("control: uid %d may not control lbd: run it as root", uid)}
	}
	return s.h(s.ctx, req)
}

func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("read peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("read peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, fmt.Errorf("read peer credentials: %w", cerr)
	}
	return cred.Uid, nil
}
