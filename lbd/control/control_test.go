package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func anyone(uint32) bool { return true }

func mustListen(t *testing.T, h Handler, allow func(uint32) bool) *Server {
	t.Helper()
	s, err := listen(filepath.Join(t.TempDir(), "run", "lbd-test.sock"), h, nil, allow)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func call(t *testing.T, path string, cmd string) (Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Call(ctx, path, Request{Command: cmd})
}

func TestVerdictReachesClient(t *testing.T) {
	s := mustListen(t, func(_ context.Context, req Request) Response {
		if req.Command != CmdReload {
			return Response{Message: "unknown command " + req.Command}
		}
		return Response{Message: "reload rejected; running configuration kept", Errors: []string{"a.yaml:3: services[0].vip: bad", "a.yaml:9: x"}}
	}, anyone)
	resp, err := call(t, s.Path(), CmdReload)
	if err != nil {
		t.Fatal(err)
	}
	if resp.OK || len(resp.Errors) != 2 {
		t.Fatalf("response %+v", resp)
	}
	if e := resp.Err(); e == nil || !strings.Contains(e.Error(), "a.yaml:3: services[0].vip: bad\n  a.yaml:9: x") {
		t.Errorf("Err() = %v", e)
	}
	if resp, _ := call(t, s.Path(), "frobnicate"); resp.OK || !strings.Contains(resp.Message, "unknown command frobnicate") {
		t.Errorf("unknown command answered %+v", resp)
	}
}

func TestSocketMode(t *testing.T) {
	s := mustListen(t, func(context.Context, Request) Response { return Response{OK: true} }, anyone)
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
}

func TestRefusesOtherUsers(t *testing.T) {
	called := false
	s := mustListen(t, func(context.Context, Request) Response { called = true; return Response{OK: true} },
		func(uint32) bool { return false })
	resp, err := call(t, s.Path(), CmdPing)
	if err != nil {
		t.Fatal(err)
	}
	if resp.OK || called || !strings.Contains(resp.Message, "may not control lbd: run it as root") {
		t.Errorf("response %+v, handler called %t", resp, called)
	}
}

func TestStaleAndLiveSockets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lbd.sock")
	// A socket file nobody listens on, as a killed lbd leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left for the test: %v", err)
	}
	s, err := listen(path, func(context.Context, Request) Response { return Response{OK: true, Message: "pong"} }, nil, anyone)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer s.Close()
	if _, err := listen(path, nil, nil, anyone); !errors.Is(err, ErrInUse) {
		t.Errorf("second listener on a live socket: %v, want ErrInUse", err)
	}
	if resp, err := call(t, path, CmdPing); err != nil || resp.Message != "pong" {
		t.Errorf("first server disturbed: %+v %v", resp, err)
	}
}

func TestCloseEndsHandlersAndRemovesSocket(t *testing.T) {
	started := make(chan struct{})
	s, err := listen(filepath.Join(t.TempDir(), "lbd.sock"), func(ctx context.Context, _ Request) Response {
		close(started)
		<-ctx.Done()
		return Response{Message: "stopping"}
	}, nil, anyone)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := call(t, s.Path(), CmdReload); errc <- err }()
	<-started
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a handler ran")
	}
	<-errc
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	if _, err := call(t, s.Path(), CmdPing); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("call after Close: %v, want ErrNoDaemon", err)
	}
}

func TestCallHonoursDeadline(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	s := mustListen(t, func(ctx context.Context, _ Request) Response {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return Response{OK: true}
	}, anyone)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Call(ctx, s.Path(), Request{Command: CmdReload}); err == nil {
		t.Error("a call past its deadline returned no error")
	}
}

func TestSocketPath(t *testing.T) {
	a, b := SocketPath("/run/dsrlb", "/sys/fs/bpf/dsrlb"), SocketPath("/run/dsrlb", "/sys/fs/bpf/dsrlb-x/")
	if a != "/run/dsrlb/lbd-sys-fs-bpf-dsrlb.sock" || a == b {
		t.Errorf("socket paths %q %q", a, b)
	}
}

// Path is the socket's path (lbd derives it from the pin path itself).
func (s *Server) Path() string { return s.path }
