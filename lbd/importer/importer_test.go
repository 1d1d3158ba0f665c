package importer

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/shared/config"
)

var update = flag.Bool("update", false, "rewrite the golden .yaml and .stderr files of testdata/")

// goldenInputs are the source files of testdata/TOOL (not the golden
// outputs, flags or included directories).
func goldenInputs(t *testing.T, tool string) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join("testdata", tool, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, p := range all {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue
		}
		switch filepath.Ext(p) {
		case ".yaml", ".stderr", ".flags":
			continue
		}
		in = append(in, p)
	}
	if len(in) == 0 {
		t.Fatalf("no golden inputs in testdata/%s", tool)
	}
	return in
}

// flagsFor reads NAME.flags beside an input: the command-line flags of
// `lbd import` that case runs with, as "--flag value" pairs.
func flagsFor(t *testing.T, input string) Options {
	t.Helper()
	var opts Options
	data, err := os.ReadFile(strings.TrimSuffix(input, filepath.Ext(input)) + ".flags")
	if errors.Is(err, os.ErrNotExist) {
		return opts
	}
	if err != nil {
		t.Fatal(err)
	}
	var vips, servers []string
	f := strings.Fields(string(data))
	for i := 0; i+1 < len(f); i += 2 {
		switch f[i] {
		case "--interface":
			opts.Interface = f[i+1]
		case "--vip":
			vips = append(vips, f[i+1])
		case "--server":
			servers = append(servers, f[i+1])
		default:
			t.Fatalf("%s: unknown flag %s", input, f[i])
		}
	}
	if opts.Aloha, err = ParseAlohaFlags(vips, servers); err != nil {
		t.Fatal(err)
	}
	return opts
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (go test ./lbd/importer -update creates it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (rerun with -update if intended)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestGolden imports every file of testdata/TOOL and compares the YAML and
// the report with the golden files; the YAML is then loaded with
// shared/config's loader, which must agree with the import's verdict.
func TestGolden(t *testing.T) {
	for _, tool := range Tools {
		for _, in := range goldenInputs(t, tool) {
			t.Run(in, func(t *testing.T) {
				res := mustImport(t, tool, in, flagsFor(t, in))
				var report bytes.Buffer
				res.Report(&report)
				base := strings.TrimSuffix(in, filepath.Ext(in))
				golden(t, base+".yaml", res.YAML)
				golden(t, base+".stderr", report.Bytes())
				loadAgrees(t, res)
			})
		}
	}
}

func mustImport(t *testing.T, tool, path string, opts Options) *Result {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Import(tool, path, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// loadAgrees loads the output as `lbd validate` does (config.Load from a
// file, then what lbd requires of the balancer).
func loadAgrees(t *testing.T, res *Result) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dsrlb.yaml")
	if err := os.WriteFile(path, res.YAML, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err == nil {
		err = cfg.RequireBalancer()
	}
	if (err == nil) != (res.Invalid == nil) {
		t.Fatalf("config.Load says %v, the import said invalid=%v", err, res.Invalid)
	}
}

// TestVerdicts pins what each golden case must show, independently of the
// golden files (which -update rewrites).
func TestVerdicts(t *testing.T) {
	cases := []struct {
		tool, file string
		carried    bool     // nothing reported, output valid
		valid      bool     // output validates
		notes      []string // each must appear in some note
		services   int      // services in the output, when valid
	}{
		{"keepalived", "clean.conf", true, true, nil, 1},
		{"keepalived", "fallback.conf", true, true, nil, 2},
		{"keepalived", "dr_web.conf", false, true, []string{"global_defs notification_email", "dr_web.conf:12: tcpfin 120", "vrrp_instance VI_WEB", "timeout 5s: a check must take less than its interval 5s in dsrlb: timeout 4s is used"}, 3},
		{"keepalived", "check_types.conf", false, true, []string{
			"SSL_GET: the certificate is not verified", "require_reply: dsrlb looks for the reply's bytes anywhere",
			"MISC_CHECK: /usr/local/bin/check_app.sh runs as lbd does",
		}, 5},
		{"keepalived", "not_carried.conf", false, false, []string{
			"persistence_timeout 300", "SSL_GET", "MISC_CHECK", "lb_kind NAT", "fwmark 7 service", "fwmark 9 service",
			"lb_algo wlc", "delay_before_retry 2", "weight 300",
			"server port 8443", "lvs_method TUN", "protocol sctp", "$PORT=8443", "include missing.d/*.conf",
			"digest", "notify_down", "HTTP_GET: not carried: dsrlb runs one check per server",
			"TCP_CHECK of 2001:db8::52", "not_carried.conf:90: misc_dynamic: not carried",
			"not_carried.conf:100: UDP_CHECK: names no payload: give check.send",
		}, 0},
		{"aloha", "seed.cfg", false, false, []string{"director exchange: names no VIP", "server exchange1: names no address", "server exchange2: names no address"}, 0},
		{"aloha", "seed_addresses.cfg", true, true, nil, 1},
		{"aloha", "fallback.cfg", true, true, nil, 1},
		{"aloha", "gui.cfg", true, true, nil, 3},
		{"aloha", "not_carried.cfg", false, false, []string{
			"service lvs: not carried: outside a director", "balance leastconn", "mode nat", "source 192.0.2.2",
			"option persistence", "weight 5: not carried: not indented", "balance srcdst",
			"weight 400", "www3.example.com:80", "option arpcheck",
		}, 0},
		{"ipvsadm", "dr.save", true, true, nil, 3},
		{"ipvsadm", "not_carried.save", false, false, []string{
			"-s wlc", "-p 300", "-M 255.255.255.0", "-m (NAT) for 192.0.2.31:443", "-i (tunnel)", "weight 1000",
			"-x 500", "-y 100", "-b sh-port", "fwmark 5 service", "protocol sctp", "www.example.com:http",
			"-a 192.0.2.40:80: not carried: no -A", "tcpfin 120",
		}, 0},
	}
	for _, c := range cases {
		t.Run(c.tool+"/"+c.file, func(t *testing.T) {
			in := filepath.Join("testdata", c.tool, c.file)
			res := mustImport(t, c.tool, in, flagsFor(t, in))
			var report bytes.Buffer
			res.Report(&report)
			if res.Carried() != c.carried || (res.Invalid == nil) != c.valid {
				t.Fatalf("carried=%v valid=%v, want %v %v:\n%s", res.Carried(), res.Invalid == nil, c.carried, c.valid, report.String())
			}
			for _, n := range c.notes {
				if !strings.Contains(report.String(), n) {
					t.Errorf("no note mentions %q:\n%s", n, report.String())
				}
			}
			for _, n := range res.Notes {
				if n.At.File == "" || (n.At.Line == 0 && n.What != "balancer.interface") {
					t.Errorf("note without a source line: %v", n)
				}
			}
			if c.valid {
				cfg, err := config.Parse("output", res.YAML)
				if err != nil {
					t.Fatal(err)
				}
				if len(cfg.Services) != c.services {
					t.Errorf("%d services, want %d", len(cfg.Services), c.services)
				}
			}
		})
	}
}

// Carried reports whether everything was carried and the output is valid
// (lbd import tells the two apart by its exit code).
func (r *Result) Carried() bool { return len(r.Notes) == 0 && r.Invalid == nil }
