package importer

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/shared/config"
)

// fuzzImport runs one source through parser and mapping: whatever the
// input, no panic, and the output is always well-formed YAML with valid
// names (what validation refuses is only what the source lacks).
func fuzzImport(t *testing.T, tool string, data []byte, opts Options) {
	res, err := Import(tool, "f.conf", data, opts)
	if err != nil {
		return // a syntax error, reported with its line
	}
	var es config.Errors
	if res.Invalid != nil && !errors.As(res.Invalid, &es) {
		t.Fatalf("output is not checkable YAML: %v\n%s", res.Invalid, res.YAML)
	}
	for _, e := range es {
		if strings.HasPrefix(e.Msg, "YAML syntax") || strings.HasSuffix(e.Path, ".name") || strings.Contains(e.Msg, "unknown field") {
			t.Fatalf("import wrote a broken file: %v\n%s", e, res.YAML)
		}
	}
	for _, n := range res.Notes {
		if n.At.File == "" {
			t.Fatalf("note without a file: %v", n)
		}
	}
}

func addSeeds(f *testing.F, tool string) {
	t := &testing.T{}
	for _, in := range goldenInputs(t, tool) {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

func FuzzKeepalived(f *testing.F) {
	addSeeds(f, "keepalived")
	f.Add([]byte("include inc.conf\nvirtual_server 192.0.2.10 80 { real_server 192.0.2.11 80 { TCP_CHECK { } } }\n"))
	f.Add([]byte("virtual_server_group G {\n 192.0.2.1-255 0\n fwmark 3\n}\nvirtual_server group G {\n}\n"))
	fsys := memFS(map[string]string{
		"inc.conf":  "virtual_server 192.0.2.20 80 {\n lb_kind DR\n}\ninclude loop.conf\n",
		"loop.conf": "include loop.conf\n",
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzImport(t, "keepalived", data, Options{Interface: "eth0", FS: fsys})
	})
}

func FuzzAloha(f *testing.F) {
	addSeeds(f, "aloha")
	flags, err := ParseAlohaFlags([]string{"192.0.2.10:443"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzImport(t, "aloha", data, Options{})
		fuzzImport(t, "aloha", data, Options{Interface: "eth0", Aloha: flags})
	})
}

func FuzzIpvsadm(f *testing.F) {
	addSeeds(f, "ipvsadm")
	f.Add([]byte("-A -t [2001:db8::10]:80 -s mh -p\n-a -t [2001:db8::10]:80 -r [2001:db8::11]:80 -g -w 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzImport(t, "ipvsadm", data, Options{})
	})
}
