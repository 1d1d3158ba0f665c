package config

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// TestValid checks every testdata/valid file parses and yields exactly its
// golden Config (defaults included), so a changed default shows in review.
func TestValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no valid testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got, _ := json.MarshalIndent(cfg, "", "  ")
			compareGolden(t, strings.TrimSuffix(f, ".yaml")+".golden.json", string(got)+"\n")
		})
	}
}

// TestInvalid checks every testdata/invalid file is refused with exactly the
// messages of its .err file, all of them at once.
func TestInvalid(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no invalid testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Load = %v, want config.Errors", err)
			}
			compareGolden(t, strings.TrimSuffix(f, ".yaml")+".err", err.Error()+"\n")
		})
	}
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test ./shared/config -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (rerun with -update if intended)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestIssueExample pins the message the issue asks for, word for word.
func TestIssueExample(t *testing.T) {
	_, err := Load("testdata/invalid/typo_weight.yaml")
	want := `testdata/invalid/typo_weight.yaml:10: services[0].servers[0]: unknown field "wieght" (did you mean "weight"?)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v\nwant a line %s", err, want)
	}
}

// TestEveryRuleHasAFailingCase guards the invalid testdata against shrinking:
// each rule's message must appear in some .err file.
func TestEveryRuleHasAFailingCase(t *testing.T) {
	all := ""
	files, _ := filepath.Glob("testdata/invalid/*.err")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all += string(b)
	}
	for _, frag := range []string{
		"unknown field", "did you mean", "given twice", "is a string, expected", "not a duration",
		"YAML syntax", "file is empty", "no services defined", "has no servers",
		"is not a valid name", "used twice in this service", "is already used by services",
		"is already taken by service", "different families", "is a VIP of this file",
		"must be shorter than interval", "must be a prime", "is out of range", "is listed twice",
		"not an Ethernet MAC", "multicast or zero MAC", "not an IP address", "not a routable unicast",
		"is not one of", "only used by http", "must start with '/'", "not an HTTP status",
		"too few for a service", "second YAML document", "top level must be a mapping",
		"not an interface name", "absolute path", "not host:port", "check needs one",
		"is required",
		"AS number is required", "AS number 0 is out of range", "not an IPv4 address", "no peers",
		"peer 192.0.2.254 is listed twice", "not a BGP hold time", "TCP MD5 key has", "can never be met",
		"not a BGP community", "share the VIP", "only used with balancer.bgp",
		"cannot own the VIPs with balancer.bgp",
		"only used by https", "only used by udp", "only used by dns", "only used by exec",
		"empty expect_body", "HEAD request has no body", "never used", "not a host name",
		"not a server name", "needs the datagram", "not an escape", "needs two hex digits",
		"empty expect matches", "not a domain name", "needs the program", "this server is not checked",
	} {
		if !strings.Contains(all, frag) {
			t.Errorf("no invalid testdata exercises %q", frag)
		}
	}
}

// TestShippedExample keeps the packaged example config valid.
func TestShippedExample(t *testing.T) {
	cfg, err := Load("../../packaging/examples/dsrlb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Balancer.Interface == "" || len(cfg.Services) < 2 {
		t.Fatalf("example lost its content: %+v", cfg)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"name", "address", "weight", "check", "mac"}
	for in, want := range map[string]string{"wieght": "weight", "adress": "address", "Weight": "weight", "zzzzzz": "", "chek": "check"} {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzLoad: any input is either a Config or an Errors, never a panic, and
// every error carries the file name.
func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, _ := filepath.Glob(dir + "/*.yaml")
		for _, file := range files {
			b, _ := os.ReadFile(file)
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err == nil {
			if cfg == nil || len(cfg.Services) == 0 {
				t.Fatal("nil error without a usable config")
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error of type %T: %v", err, err)
		}
		for _, e := range es {
			if e.File != "fuzz.yaml" || e.Msg == "" {
				t.Fatalf("error without file or message: %#v", e)
			}
		}
	})
}

// TestReadmeReference keeps README.md's configuration reference equal to
// the schema: every field, with its documentation, between the markers.
func TestReadmeReference(t *testing.T) {
	const begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q ... %q markers", begin, end)
	}
	want := Reference()
	if got := s[i+len(begin) : j]; got != want {
		if *update {
			s = s[:i+len(begin)] + want + s[j:]
			if err := os.WriteFile("../../README.md", []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README.md configuration reference is stale; run go test ./shared/config -update\n--- want\n%s", want)
	}
}
