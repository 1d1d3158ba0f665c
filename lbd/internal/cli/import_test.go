package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

const importData = "../../importer/testdata/"

func runImport(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	root := NewRoot("test")
	var out, errb bytes.Buffer
	root.SetArgs(append([]string{"import"}, args...))
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	code = cmdutil.Execute(root, &errb)
	return code, out.String(), errb.String()
}

// TestImportExitCodes: the documented exit codes, and a valid output
// whenever the code says so.
func TestImportExitCodes(t *testing.T) {
	saved, err := os.ReadFile(importData + "ipvsadm/dr.save")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		err   string // in stderr
	}{
		{"carried", "", []string{"keepalived", importData + "keepalived/clean.conf", "--interface", "eth0"}, importCarried, ""},
		{"stdin", string(saved), []string{"ipvsadm", "-", "--interface", "eth0"}, importCarried, ""},
		{"aloha flags", "", []string{"aloha", importData + "aloha/seed.cfg", "--interface", "eth0", "--vip", "exchange=192.0.2.10",
			"--server", "exchange1=192.0.2.11:443", "--server", "exchange/exchange2=192.0.2.12:443"}, importCarried, ""},
		{"not carried", "", []string{"keepalived", importData + "keepalived/dr_web.conf"}, importNotCarried, "dr_web.conf:15: vrrp_instance VI_WEB: not carried"},
		{"seed without addresses", "", []string{"aloha", importData + "aloha/seed.cfg", "--interface", "eth0"}, importInvalid, "seed.cfg:6: server exchange1: names no address: give --server exchange1=ADDR"},
		{"missing file", "", []string{"ipvsadm", "/nonexistent/x.save"}, importUnreadable, "no such file"},
		{"broken syntax", "virtual_server 192.0.2.10 80 {\n", []string{"keepalived", "-"}, importUnreadable, "-:1: block of \"virtual_server\" is not closed"},
		{"unknown tool", "", []string{"haproxy", "-"}, importUnreadable, "unknown source"},
		{"flag for nothing", "", []string{"aloha", importData + "aloha/seed.cfg", "--server", "nope=192.0.2.1"}, importUsageFailed, `no server "nope"`},
		{"bad flag", "", []string{"aloha", "-", "--server", "192.0.2.1"}, importUsageFailed, "write NAME=ADDR"},
		{"flag for another tool", "", []string{"ipvsadm", "-", "--vip", "192.0.2.1"}, importUsageFailed, "for aloha only"},
		{"arguments", "", []string{"ipvsadm"}, importUsageFailed, "accepts 2 arg"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runImport(t, c.stdin, c.args...)
			if code != c.code || !strings.Contains(errs, c.err) {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.code, errs)
			}
			if c.code == importCarried && errs != "" {
				t.Errorf("carried everything but wrote to stderr:\n%s", errs)
			}
			valid := c.code == importCarried || c.code == importNotCarried
			if c.code == importUnreadable || c.code == importUsageFailed {
				if out != "" {
					t.Errorf("nothing to print, but stdout has:\n%s", out)
				}
				return
			}
			cfg, err := config.Parse("out", []byte(out))
			if err == nil {
				err = cfg.RequireBalancer()
			}
			if (err == nil) != valid {
				t.Errorf("exit %d but the output's validation says %v:\n%s", code, err, out)
			}
		})
	}
}
