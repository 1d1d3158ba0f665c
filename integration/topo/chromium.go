package topo

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Browser is a headless Chromium (Debian's chromium) started inside a
// namespace and driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: fd 3 carries commands in, fd 4 results out,
// each a JSON message ended by a NUL byte), so a test needs no port and no
// WebSocket library. One long-running browser lets a test read one page's
// DOM at several times: what changed did so without a reload.
type Browser struct {
	cmd  *exec.Cmd
	in   *os.File // our end of chromium's fd 3
	out  *os.File // our end of chromium's fd 4
	dir  string   // fresh profile, removed by Close
	log  *syncBuffer
	done chan struct{}

	mu      sync.Mutex
	next    int
	pending map[int]chan cdpReply
	readErr error
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// BrowserPath is the Chromium binary Debian installs.
const BrowserPath = "chromium"

// StartBrowser starts headless Chromium inside ns with a fresh profile
// under dir. Every background service that would reach out (updates,
// sync, QUIC probes) is off.
func StartBrowser(ns *NS, dir string) (*Browser, error) {
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create DevTools pipe: %w", err)
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		cmdR.Close()
		cmdW.Close()
		return nil, fmt.Errorf("create DevTools pipe: %w", err)
	}
	b := &Browser{in: cmdW, out: resR, dir: dir, log: &syncBuffer{}, done: make(chan struct{}), pending: map[int]chan cdpReply{}}
	b.cmd = exec.Command("nsenter", "--net="+ns.Path(), "--", BrowserPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+dir, "--window-size=1500,700",
		"--remote-debugging-pipe", "about:blank")
	// The profile, caches and crash reports all go under dir.
	b.cmd.Env = append(os.Environ(), envRun+"="+RunID, "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	b.cmd.ExtraFiles = []*os.File{cmdR, resW}
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	errc := make(chan error, 1)
	spawner() <- func() { errc <- b.cmd.Start() }
	err = <-errc
	cmdR.Close() // the child holds its ends
	resW.Close()
	if err != nil {
		cmdW.Close()
		resR.Close()
		return nil, fmt.Errorf("start %s in %s: %w", BrowserPath, ns.Name, err)
	}
	go func() {
		b.cmd.Wait()
		close(b.done)
	}()
	go b.read()
	return b, nil
}

// read dispatches replies to their callers; events are ignored.
func (b *Browser) read() {
	r := bufio.NewReader(b.out)
	for {
		msg, err := r.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			b.readErr = fmt.Errorf("DevTools pipe closed: %w; chromium output:\n%s", err, b.log.String())
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m struct {
			ID int `json:"id"`
			cdpReply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.pending[m.ID]
		delete(b.pending, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
}

// call sends one DevTools command (to a page when session is set) and
// decodes its result into out.
func (b *Browser) call(ctx context.Context, session, method string, params, out any) error {
	b.mu.Lock()
	if b.readErr != nil {
		b.mu.Unlock()
		return b.readErr
	}
	b.next++
	id := b.next
	ch := make(chan cdpReply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	if _, err := b.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("send %s: %w", method, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.readErr
		}
		if r.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, r.Error.Message, r.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// Page is one tab.
type Page struct {
	b       *Browser
	session string
}

// Open opens url in a new tab and waits until it has loaded.
func (b *Browser) Open(ctx context.Context, url string) (*Page, error) {
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": url}, &target); err != nil {
		return nil, err
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		return nil, err
	}
	p := &Page{b: b, session: att.SessionID}
	for {
		// A new tab shows about:blank, complete, before url commits.
		var state [2]string
		if err := p.Eval(ctx, `[document.readyState, location.href]`, &state); err == nil && state[0] == "complete" && state[1] == url {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("load %s: %w", url, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Eval evaluates a JavaScript expression in the page (awaiting a promise)
// and decodes its value, which must be JSON-serialisable, into out.
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	err := p.b.call(ctx, p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("evaluate %q: %s", expr, r.Exception.Text)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// Screenshot returns a PNG of the page as shown.
func (p *Page) Screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := p.b.call(ctx, p.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.Data)
}

// Output is what chromium printed.
func (b *Browser) Output() string { return b.log.String() }

// Close asks the browser to quit, kills its process group if it does not
// within 5 s, and removes the profile.
func (b *Browser) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = b.call(ctx, "", "Browser.close", nil, nil)
	cancel()
	var err error
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		err = errors.New("chromium did not quit within 5s of Browser.close: killed")
	}
	// The renderer and utility processes share chromium's process group
	// (Setpgid above): end any left over, by that group only.
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
	b.in.Close()
	b.out.Close()
	return errors.Join(err, os.RemoveAll(b.dir))
}
