package config

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

// TestCheckFiles: lbd's check of the files an https or exec check names
// points at the service's check: line and says what to do.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	writeCA(t, ca)
	notPEM := filepath.Join(dir, "not.pem")
	write(t, notPEM, "hello\n", 0o644)
	script := filepath.Join(dir, "check.sh")
	write(t, script, "#!/bin/sh\nexit 0\n", 0o755)
	noexec := filepath.Join(dir, "noexec.sh")
	write(t, noexec, "#!/bin/sh\n", 0o644)
	shared := filepath.Join(dir, "shared.sh")
	write(t, shared, "#!/bin/sh\n", 0o755)
	if err := os.Chmod(shared, 0o775); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, check, want string
	}{
		{"ca ok", "{type: https, ca_file: " + ca + "}", ""},
		{"ca missing", "{type: https, ca_file: " + dir + "/none.pem}", "f.yaml:6: services[0].check.ca_file: read CA file: open " + dir + "/none.pem: no such file or directory"},
		{"ca not pem", "{type: https, ca_file: " + notPEM + "}", "holds no PEM certificate"},
		{"command ok", "{type: exec, command: " + script + "}", ""},
		{"command missing", "{type: exec, command: " + dir + "/none}", "f.yaml:6: services[0].check.command: the check command cannot be run: stat " + dir + "/none: no such file or directory"},
		{"command dir", "{type: exec, command: " + dir + "}", "is not a regular file"},
		{"command noexec", "{type: exec, command: " + noexec + "}", "is not executable: chmod +x it"},
		{"command writable", "{type: exec, command: " + shared + "}", "writable by group or others (mode -rwxrwxr-x), who could then run code as lbd: chmod go-w it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := "services:\n  - name: a\n    vip: 192.0.2.10\n    ports: [443]\n    servers: [{name: s1, address: 192.0.2.11}]\n    check: " + tc.check + "\n"
			cfg, err := Parse("f.yaml", []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.CheckFiles()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckFiles = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckFiles = %v, want %q", err, tc.want)
			}
		})
	}
}

func write(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

func writeCA(t *testing.T, path string) {
	t.Helper()
	write(t, path, string(nettest.NewPKI(t, "www.example.com", net.IPv4(127, 0, 0, 1)).CAPEM()), 0o644)
}

// TestUnescape: the escapes of a udp check's send and expect.
func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`ping`: "ping", `a\nb\r\t`: "a\nb\r\t", `\xff\x00\0`: "\xff\x00\x00", `\\x`: `\x`, `"q"`: `"q"`,
	} {
		if got, err := Unescape(in); err != nil || got != want {
			t.Errorf("Unescape(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`\`, `\q`, `\x`, `\xg0`, `a\x1`} {
		if _, err := Unescape(bad); err == nil {
			t.Errorf("Unescape(%q) = nil error", bad)
		}
	}
}

// TestArgs: argument lists survive the comparable form, empty words too.
func TestArgs(t *testing.T) {
	for _, words := range [][]string{nil, {""}, {"a"}, {"--port", "80", ""}} {
		got := ArgsOf(words).List()
		if len(got) != len(words) || strings.Join(got, "|") != strings.Join(words, "|") {
			t.Errorf("ArgsOf(%q).List() = %q", words, got)
		}
	}
}

// TestCheckFilesLineThroughLoader: the line CheckFiles names is the check's
// also when the Loader reuses a service parsed for an earlier file and the
// service moved down (a service was inserted before it).
func TestCheckFilesLineThroughLoader(t *testing.T) {
	svc := func(name string, port int, check string) string {
		return "  - name: " + name + "\n    vip: 192.0.2.10\n    ports: [" + strconv.Itoa(port) + "]\n    servers:\n      - {name: a, address: 192.0.2.11}\n    check:\n      " + check + "\n"
	}
	missing := "{type: exec, command: /nonexistent/check}"
	first := "balancer:\n  interface: eth0\nservices:\n" + svc("x", 80, missing)
	second := "balancer:\n  interface: eth0\nservices:\n" + svc("w", 81, "{type: tcp}") + svc("x", 80, missing)
	l := new(Loader)
	for _, tc := range []struct {
		data, want string
	}{{first, "f.yaml:9: services[0].check.command"}, {second, "f.yaml:16: services[1].check.command"}} {
		cfg, err := l.Parse("f.yaml", []byte(tc.data))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.CheckFiles(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("CheckFiles = %v, want it to start with %q", err, tc.want)
		}
	}
}

// TestCheckFilesNotify: balancer.notify's command is held to an exec
// check's rules (it runs as root too), the error at the balancer: line.
func TestCheckFilesNotify(t *testing.T) {
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook.sh")
	write(t, hook, "#!/bin/sh\n", 0o755)
	for cmd, want := range map[string]string{
		hook:               "",
		dir + "/none":      "f.yaml:1: balancer.notify.command: the check command cannot be run: stat " + dir + "/none: no such file or directory",
		dir + "/shared.sh": "chmod go-w it",
	} {
		if cmd == dir+"/shared.sh" {
			write(t, cmd, "#!/bin/sh\n", 0o755)
			if err := os.Chmod(cmd, 0o777); err != nil {
				t.Fatal(err)
			}
		}
		data := "balancer:\n  interface: eth0\n  notify: {command: " + cmd + "}\nservices:\n  - name: a\n    vip: 192.0.2.10\n    ports: [80]\n    servers: [{name: s1, address: 192.0.2.11}]\n"
		cfg, err := Parse("f.yaml", []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.CheckFiles()
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: CheckFiles = %v, want nil", cmd, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: CheckFiles = %v, want %q", cmd, err, want)
		}
	}
}
