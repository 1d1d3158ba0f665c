package cmdutil

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/shared/config"
)

// TestConfigManPage: dsrlb.yaml(5) documents every field of the schema
// with its text, and groff reads it without a warning.
func TestConfigManPage(t *testing.T) {
	page := ConfigManPage("1.2.3", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	if !strings.HasPrefix(page, `.TH "DSRLB.YAML" "5" "Jan 2026" "dsrlb 1.2.3"`) {
		t.Errorf("title line: %q", strings.SplitN(page, "\n", 2)[0])
	}
	fields := config.Fields()
	if len(fields) < 30 {
		t.Fatalf("only %d fields in the schema", len(fields))
	}
	for _, f := range fields {
		if !strings.Contains(page, ".TP\n\\fB"+escape(f.Path)+"\\fR\n"+escape(f.Doc)+"\n") {
			t.Errorf("dsrlb.yaml.5 lacks field %s with its documentation", f.Path)
		}
	}
	for _, sec := range []string{".SH NAME", ".SH SYNOPSIS", ".SH FIELDS", ".SH EXAMPLE", ".SH FILES", ".SH SEE ALSO"} {
		if !strings.Contains(page, sec+"\n") {
			t.Errorf("dsrlb.yaml.5 lacks %s", sec)
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("groff not installed: page not rendered")
		return
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("groff: %v\n%s", err, out)
	}
}

func TestRoffParagraphs(t *testing.T) {
	got := roff("`/etc/x`: the file.\n\nplain -v text\n.dot")
	want := ".TP\n\\fB/etc/x\\fR\nthe file.\n.PP\nplain \\-v text\n\\&.dot\n"
	if got != want {
		t.Errorf("roff:\n%q\nwant\n%q", got, want)
	}
}
