package cmdutil

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/shared/config"
)

func run(t *testing.T, extra func(*config.Config) error, args ...string) (int, string, string) {
	t.Helper()
	var path string
	root := &cobra.Command{Use: "tool", Version: "1.0"}
	AddConfigFlag(root, &path)
	root.AddCommand(NewValidateCmd(&path, extra))
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	return Execute(root, &errb), out.String(), errb.String()
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		extra    func(*config.Config) error
		args     []string
		code     int
		out, err string
	}{
		{"valid", nil, []string{"validate", "-c", "../../packaging/examples/dsrlb.yaml"}, 0, "configuration valid: 2 services, 2 VIPs, 5 servers", ""},
		{"typo", nil, []string{"validate", "--config", "../config/testdata/invalid/typo_weight.yaml"}, 1, "", `typo_weight.yaml:10: services[0].servers[0]: unknown field "wieght" (did you mean "weight"?)`},
		{"all errors", nil, []string{"validate", "-c", "../config/testdata/invalid/bounds.yaml"}, 1, "", "19 error(s); configuration not valid"},
		{"extra check", (*config.Config).RequireBalancer, []string{"validate", "-c", "../config/testdata/valid/ipv6_udp_allports.yaml"}, 1, "", "set balancer.interface"},
		{"missing file", nil, []string{"validate", "-c", "/nonexistent/dsrlb.yaml"}, 1, "", "tool: read config: open /nonexistent/dsrlb.yaml: no such file or directory"},
		{"usage", nil, []string{"validate", "extra-arg"}, 2, "", "see tool --help"},
		{"version", nil, []string{"--version"}, 0, "tool version 1.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, tc.extra, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errs, tc.err) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout ~%q, stderr ~%q", code, out, errs, tc.code, tc.out, tc.err)
			}
		})
	}
}

func TestDefaultConfigPath(t *testing.T) {
	if _, err := os.Stat(config.DefaultPath); err == nil {
		t.Skip("a real configuration is installed at " + config.DefaultPath)
	}
	code, _, errs := run(t, nil, "validate")
	if code != 1 || !strings.Contains(errs, config.DefaultPath) {
		t.Errorf("default path not used: %d %q", code, errs)
	}
	if config.DefaultPath != "/etc/dsrlb/dsrlb.yaml" {
		t.Error("default path moved out of /etc/dsrlb")
	}
}
