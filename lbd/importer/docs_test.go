package importer

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var noteLine = regexp.MustCompile(`^[\w./-]+\.(cfg|conf|save):\d+: `)

// TestDocsExamples keeps docs/migration.md honest: every note it quotes is
// one a golden file produces, and the ALOHA seed example is the golden
// output.
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/migration.md")
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	files, _ := filepath.Glob("testdata/*/*.stderr")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		stderr.Write(data)
	}
	quoted := 0
	for _, line := range strings.Split(string(doc), "\n") {
		if !noteLine.MatchString(line) {
			continue
		}
		quoted++
		if !strings.Contains(stderr.String(), "/"+line+"\n") {
			t.Errorf("docs/migration.md quotes a note no golden file produces (update the docs):\n%s", line)
		}
	}
	if quoted < 5 {
		t.Errorf("found %d quoted notes in docs/migration.md; the examples are gone?", quoted)
	}
	want, err := os.ReadFile("testdata/aloha/seed_addresses.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var body []string
	for _, l := range strings.Split(string(want), "\n") {
		if !strings.HasPrefix(l, "#") {
			body = append(body, l)
		}
	}
	if !strings.Contains(string(doc), strings.Join(body, "\n")) {
		t.Errorf("docs/migration.md's ALOHA seed example differs from testdata/aloha/seed_addresses.yaml:\n%s", strings.Join(body, "\n"))
	}
}
