package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestManPagesPerCommand: every command has its own page, titled with its
// own name, carrying the version and the FILES, SIGNALS and EXIT STATUS
// sections; lbd run's SIGNALS tell what SIGHUP and SIGTERM do.
func TestManPagesPerCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := Main("1.2.3", []string{"man", dir}, &out, &errb); code != 0 {
		t.Fatalf("man: exit %d %s", code, errb.String())
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "lbd*.8"))
	if len(pages) < 7 {
		t.Fatalf("%d pages: %v", len(pages), pages)
	}
	th := regexp.MustCompile(`(?m)^\.TH "([^"]+)" "8" "[^"]+" "([^"]+)"`)
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		page := string(b)
		m := th.FindStringSubmatch(page)
		want := strings.ToUpper(strings.TrimSuffix(filepath.Base(p), ".8"))
		if m == nil || m[1] != want || m[2] != "dsrlb 1.2.3" {
			t.Errorf("%s: title line %q, want title %s and source dsrlb 1.2.3", filepath.Base(p), m, want)
		}
		for _, sec := range []string{".SH EXIT STATUS", ".SH SIGNALS", ".SH FILES", ".SH SEE ALSO"} {
			if !strings.Contains(page, sec+"\n") {
				t.Errorf("%s lacks %s", filepath.Base(p), sec)
			}
		}
		if strings.Index(page, ".SH FILES") > strings.Index(page, ".SH SEE ALSO") {
			t.Errorf("%s: FILES after SEE ALSO", filepath.Base(p))
		}
	}
	run, _ := os.ReadFile(filepath.Join(dir, "lbd-run.8"))
	for _, want := range []string{"SIGHUP", "SIGTERM", "keep forwarding", "\\-\\-replace\\-incompatible"} {
		if !strings.Contains(string(run), want) {
			t.Errorf("lbd-run.8 lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "dsrlb.yaml.5")); err != nil {
		t.Errorf("dsrlb.yaml(5) not written: %v", err)
	}
}

// TestVerboseNotVersion: -v is --verbose, as in hostprep: `lbd -v
// validate` validates; only --version prints the version.
func TestVerboseNotVersion(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "dsrlb.yaml")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := Main("1.2.3", []string{"-v", "validate", "--config", cfg}, &out, &errb); code != 0 || !strings.Contains(out.String(), "configuration valid") {
		t.Errorf("lbd -v validate: exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := Main("1.2.3", []string{"--version"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "1.2.3") {
		t.Errorf("lbd --version: exit %d, %q", code, out.String())
	}
	root := NewRoot("1.2.3")
	if f := root.PersistentFlags().ShorthandLookup("v"); f == nil || f.Name != "verbose" {
		t.Errorf("-v is %v, want --verbose", f)
	}
}

// TestValidateReadsWebConfig: lbd validate (the unit's ExecStartPre)
// refuses a metrics web configuration lbd could not read, naming it.
func TestValidateReadsWebConfig(t *testing.T) {
	dir := t.TempDir()
	web := filepath.Join(dir, "web-config.yml")
	cfg := filepath.Join(dir, "dsrlb.yaml")
	text := strings.Replace(cfgText, "pin_path: /sys/fs/bpf/dsrlb-a}", "pin_path: /sys/fs/bpf/dsrlb-a, metrics: {web_config: "+web+"}}", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(web, []byte("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := Main("1.2.3", []string{"validate", "--config", cfg}, &out, &errb); code != 1 || !strings.Contains(errb.String(), web) {
		t.Errorf("validate with a broken web config: exit %d, stderr %q", code, errb.String())
	}
	if err := os.WriteFile(web, []byte("basic_auth_users: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := Main("1.2.3", []string{"validate", "--config", cfg}, &out, &errb); code != 0 {
		t.Errorf("validate with a readable web config: exit %d, stderr %q", code, errb.String())
	}
}

// TestValidateChecksCommand: lbd validate refuses an exec check whose
// command is missing, with the file and line of the check and exit 1 (as
// for any invalid file), and accepts it once it exists.
func TestValidateChecksCommand(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "check.sh")
	cfg := filepath.Join(dir, "dsrlb.yaml")
	text := strings.Replace(cfgText, "    ports: [443, 80]\n", "    ports: [443, 80]\n    check: {type: exec, command: "+script+"}\n", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Main("1.2.3", []string{"validate", "--config", cfg}, &out, &errb)
	if want := cfg + ":7: services[0].check.command: the check command cannot be run"; code != 1 || !strings.Contains(errb.String(), want) {
		t.Errorf("validate with a missing command: exit %d, stderr %q, want %q", code, errb.String(), want)
	}
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := Main("1.2.3", []string{"validate", "--config", cfg}, &out, &errb); code != 0 {
		t.Errorf("validate with the command in place: exit %d, stderr %q", code, errb.String())
	}
}
