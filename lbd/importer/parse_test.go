package importer

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/dsrlb/dsrlb/shared/config"
)

// memFS serves files from memory, so include tests never read the host.
func memFS(files map[string]string) FS {
	m := fstest.MapFS{}
	for name, text := range files {
		m[name] = &fstest.MapFile{Data: []byte(text)}
	}
	return FS{
		ReadFile: func(name string) ([]byte, error) { return fs.ReadFile(m, name) },
		Glob:     func(pattern string) ([]string, error) { return fs.Glob(m, pattern) },
	}
}

func TestKeepalivedLexer(t *testing.T) {
	toks, err := lexLine(Pos{File: "f", Line: 1}, `misc_path "/bin/check 'a b'"x  'it''s' {a}b # gone`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tk := range toks {
		got = append(got, tk.text)
	}
	want := []string{"misc_path", "/bin/check 'a b'x", "its", "{", "a", "}", "b"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("tokens %q, want %q", got, want)
	}
	if toks, _ := lexLine(Pos{}, `weight 1 ! comment "not a quote`); len(toks) != 2 {
		t.Errorf("'!' comment kept: %v", toks)
	}
	if _, err := lexLine(Pos{File: "f", Line: 3}, `path "/open`); err == nil || !strings.Contains(err.Error(), "f:3: unterminated") {
		t.Errorf("unterminated quote: %v", err)
	}
}

func TestKeepalivedTreeErrors(t *testing.T) {
	for text, want := range map[string]string{
		"virtual_server 192.0.2.10 80 {\n  real_server 192.0.2.11 80 {\n": "k.conf:2: block of \"real_server\" is not closed",
		"global_defs {\n}\n}\n": "k.conf:3: '}' closes no block",
		"{\n}\n":                "k.conf:1: '{' opens a block with no keyword",
		"a { } {\n}\n":          "k.conf:1: '{' opens a block with no keyword",
		strings.Repeat("a {\n", 70) + strings.Repeat("}\n", 70): "blocks nested too deep",
	} {
		_, err := ParseKeepalived("k.conf", []byte(text), memFS(nil))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", text[:min(len(text), 30)], err, want)
		}
	}
}

// TestKeepalivedIncludes: globs are relative to the including file, in
// name order, nested; a loop is an error naming the line; no match is a note.
func TestKeepalivedIncludes(t *testing.T) {
	fsys := memFS(map[string]string{
		"etc/ka/keepalived.conf": "include conf.d/*.conf\ninclude none/*.conf\n",
		"etc/ka/conf.d/b.conf":   "virtual_server 192.0.2.20 80 {\n lb_kind DR\n lb_algo rr\n real_server 192.0.2.21 80 {\n }\n}\n",
		"etc/ka/conf.d/a.conf":   "include ../more/x.inc\n",
		"etc/ka/more/x.inc":      "virtual_server 192.0.2.10 80 {\n lb_kind DR\n lb_algo rr\n real_server 192.0.2.11 80 {\n }\n}\n",
	})
	m, err := ParseKeepalived("etc/ka/keepalived.conf", []byte("include conf.d/*.conf\ninclude none/*.conf\n"), fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Services) != 2 || m.Services[0].VIP.String() != "192.0.2.10" || m.Services[0].At.File != "etc/ka/more/x.inc" {
		t.Fatalf("services %+v", m.Services)
	}
	if len(m.Notes) != 1 || m.Notes[0].At.Line != 2 || !strings.Contains(m.Notes[0].Why, "no file matches etc/ka/none/*.conf") {
		t.Errorf("notes %v", m.Notes)
	}
	loop := memFS(map[string]string{"a.conf": "include b.conf\n", "b.conf": "include a.conf\n"})
	if _, err := ParseKeepalived("a.conf", []byte("include b.conf\n"), loop); err == nil || !strings.Contains(err.Error(), "b.conf:1: include a.conf: a.conf includes itself") {
		t.Errorf("include loop: %v", err)
	}
}

// TestKeepalivedStdinIncludes: from standard input, includes are relative
// to the current directory.
func TestKeepalivedStdinIncludes(t *testing.T) {
	fsys := memFS(map[string]string{"svc.conf": "virtual_server 192.0.2.10 80 {\n lb_kind DR\n}\n"})
	m, err := ParseKeepalived("-", []byte("include svc.conf\n"), fsys)
	if err != nil || len(m.Services) != 1 {
		t.Fatalf("%v %+v", err, m)
	}
}

func TestKeepalivedGroupRanges(t *testing.T) {
	text := `virtual_server_group G {
  192.0.2.30-32 80
  192.0.2.40/31 80
  2001:db8::30-2001:db8::31 80
  192.0.2.50-192.0.2.49 80
  192.0.0.0/16 80
}
virtual_server group G {
  lb_kind DR
  lb_algo rr
  real_server 192.0.2.11 80 {
  }
}
`
	m, err := ParseKeepalived("g.conf", []byte(text), memFS(nil))
	if err != nil {
		t.Fatal(err)
	}
	var vips []string
	for _, s := range m.Services {
		vips = append(vips, s.VIP.String())
	}
	if got := strings.Join(vips, " "); got != "192.0.2.30 192.0.2.31 192.0.2.32 192.0.2.40 192.0.2.41 2001:db8::30 2001:db8::31" {
		t.Errorf("VIPs %s", got)
	}
	if len(m.Notes) != 2 || m.Notes[0].At.Line != 5 || m.Notes[1].At.Line != 6 {
		t.Errorf("notes %v", m.Notes)
	}
}

// TestKeepalivedChecks: timings inherit virtual server -> real server ->
// checker, keepalived's defaults fill the rest, retry+1 failures take a
// server down, connect_port wins over the server's port.
func TestKeepalivedChecks(t *testing.T) {
	text := `virtual_server 192.0.2.10 80 {
  delay_loop 4
  connect_timeout 2
  real_server 192.0.2.11 8080 {
    retry 4
    TCP_CHECK {
      connect_port 81
    }
  }
  real_server 192.0.2.12 80 {
    MISC_CHECK {
      misc_path "/bin/true"
    }
  }
}
virtual_server 192.0.2.20 80 {
  real_server 192.0.2.21 80 {
    DNS_CHECK {
    }
  }
}
`
	m, err := ParseKeepalived("c.conf", []byte(text), memFS(nil))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Services[0].Servers[0].Check
	if c.Kind != CheckTCP || c.Interval.D.Seconds() != 4 || c.Timeout.D.Seconds() != 2 || *c.Fall != 5 || *c.Rise != 1 || c.Port != 81 {
		t.Errorf("tcp check %+v fall %d", c, *c.Fall)
	}
	if c := m.Services[0].Servers[1].Check; c.Kind != CheckExec || *c.Fall != 1 {
		t.Errorf("misc check %+v", c)
	}
	if c := m.Services[1].Servers[0].Check; c.Kind != CheckDNS || *c.Fall != 4 || c.Interval.D.Seconds() != 60 || c.Timeout.D.Seconds() != 5 {
		t.Errorf("dns check defaults %+v", c)
	}
}

func TestAlohaFlags(t *testing.T) {
	text := "director a TCP\n  server s1 check\ndirector b 192.0.2.20:80 TCP\n  server s1 192.0.2.21:80 check\n"
	f, err := ParseAlohaFlags([]string{"192.0.2.10"}, []string{"a/s1=192.0.2.11:443"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseAloha("x.cfg", []byte(text), f)
	if err != nil {
		t.Fatal(err)
	}
	a, b := m.Services[0], m.Services[1]
	if a.VIP.String() != "192.0.2.10" || a.Servers[0].Addr.String() != "192.0.2.11" || a.Servers[0].Check.Port != 443 {
		t.Errorf("director a: %+v", a)
	}
	if b.VIP.String() != "192.0.2.20" || b.Servers[0].Addr.String() != "192.0.2.21" {
		t.Errorf("director b changed by flags: %+v", b)
	}
	for _, bad := range [][2][]string{{{"nope=192.0.2.1"}, nil}, {nil, {"zz=192.0.2.1"}}} {
		f, err := ParseAlohaFlags(bad[0], bad[1])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseAloha("x.cfg", []byte(text), f); err == nil {
			t.Errorf("flags %v naming nothing accepted", bad)
		}
	}
	for _, bad := range [][2][]string{{{"a=not-an-ip"}, nil}, {nil, {"192.0.2.1"}}, {nil, {"s=192.0.2.1", "s=192.0.2.2"}}} {
		if _, err := ParseAlohaFlags(bad[0], bad[1]); err == nil {
			t.Errorf("bad flags %v accepted", bad)
		}
	}
}

func TestIpvsadmOptionalPersistence(t *testing.T) {
	m, err := ParseIpvsadm("s", []byte("ipvsadm -A -t 192.0.2.10:0 -s rr -p\n-a -t 192.0.2.10:0 -r 192.0.2.11:0 -g\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := m.Services[0]
	if !s.Persist.set() || s.Ports != nil || len(s.Servers) != 1 || s.Servers[0].Weight != nil || s.Servers[0].Fwd.Text != FwdDR {
		t.Errorf("%+v", s)
	}
}

// TestSchedulerTable: the balance rows of docs/migration.md's table.
func TestSchedulerTable(t *testing.T) {
	for sched, want := range map[string]string{"rr": "roundrobin", "wrr": "roundrobin", "sh": "source", "mh": "maglev", "wlc": "", "lblcr": "", "dh": ""} {
		text := "-A -t 192.0.2.10:80 -s " + sched + "\n-a -t 192.0.2.10:80 -r 192.0.2.11:80 -g -w 1\n"
		res, err := Import("ipvsadm", "s", []byte(text), Options{Interface: "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse("out", res.YAML)
		if err != nil {
			t.Fatal(err)
		}
		reported := len(res.Notes) == 1 && strings.Contains(res.Notes[0].String(), "s:1: -s "+sched+": not carried")
		if want == "" {
			if !reported || cfg.Services[0].Balance != config.Maglev {
				t.Errorf("-s %s: balance %s, notes %v; want maglev and one note", sched, cfg.Services[0].Balance, res.Notes)
			}
			continue
		}
		if string(cfg.Services[0].Balance) != want || len(res.Notes) != 0 {
			t.Errorf("-s %s: balance %s, notes %v; want %s", sched, cfg.Services[0].Balance, res.Notes, want)
		}
	}
}

// TestHostFSRefusesDevices: an include of a device or FIFO is a note, not a hang.
func TestHostFSRefusesDevices(t *testing.T) {
	res, err := Import("keepalived", "k.conf", []byte("include /dev/zero\n"), Options{Interface: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Notes) == 0 || !strings.Contains(res.Notes[0].Why, "not a regular file") {
		t.Errorf("notes %v", res.Notes)
	}
}
