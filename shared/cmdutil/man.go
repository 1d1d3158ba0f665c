package cmdutil

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/dsrlb/dsrlb/shared/config"
)

// ManSections are the sections cobra does not write: they go into every
// page of a binary, and Commands overrides them for one command, keyed by
// its path ("lbd run"). Text is plain: paragraphs separated by blank lines;
// a line "TERM: text" becomes a tagged paragraph (.TP).
type ManSections struct {
	Files, Signals, ExitStatus string
	Commands                   map[string]ManSections
}

// NewManCmd returns a hidden `man DIR` command writing a section 8 page
// for root and for each of its commands, each titled with its own name,
// and dsrlb.yaml.5 from the configuration schema; the packages ship them.
func NewManCmd(root *cobra.Command, sections ManSections) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return WriteManPages(root, sections, args[0])
		},
	}
}

// WriteManPages writes root's pages and dsrlb.yaml.5 into dir.
func WriteManPages(root *cobra.Command, sections ManSections, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create man directory: %w", err)
	}
	root.DisableAutoGenTag = true // keeps pages reproducible
	date := manDate()
	if err := writeManTree(root, sections, date, dir); err != nil {
		return err
	}
	page := ConfigManPage(root.Version, date)
	if err := os.WriteFile(filepath.Join(dir, "dsrlb.yaml.5"), []byte(page), 0o644); err != nil {
		return fmt.Errorf("write dsrlb.yaml.5: %w", err)
	}
	return nil
}

// manDate is SOURCE_DATE_EPOCH when set (reproducible builds), else now.
func manDate() time.Time {
	if epoch, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return time.Unix(epoch, 0).UTC()
	}
	return time.Now().UTC()
}

func writeManTree(cmd *cobra.Command, s ManSections, date time.Time, dir string) error {
	for _, c := range cmd.Commands() {
		if !c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand() {
			continue
		}
		if err := writeManTree(c, s, date, dir); err != nil {
			return err
		}
	}
	// Title left empty: cobra then titles the page with the command's own
	// path (LBD-RUN), not the root's.
	hdr := &doc.GenManHeader{Section: "8", Source: "dsrlb " + cmd.Root().Version, Manual: "dsrlb manual", Date: &date}
	var buf bytes.Buffer
	if err := doc.GenMan(cmd, hdr, &buf); err != nil {
		return fmt.Errorf("render man page of %s: %w", cmd.CommandPath(), err)
	}
	page := insertSections(buf.String(), s.forCommand(cmd.CommandPath()))
	name := strings.ReplaceAll(cmd.CommandPath(), " ", "-") + ".8"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(page), 0o644); err != nil {
		return fmt.Errorf("write man page %s: %w", name, err)
	}
	return nil
}

// forCommand is s with the command's own overrides applied.
func (s ManSections) forCommand(path string) ManSections {
	o := s.Commands[path]
	pick := func(own, all string) string {
		if own != "" {
			return own
		}
		return all
	}
	return ManSections{Files: pick(o.Files, s.Files), Signals: pick(o.Signals, s.Signals), ExitStatus: pick(o.ExitStatus, s.ExitStatus)}
}

// insertSections puts EXIT STATUS, SIGNALS and FILES where man-pages(7)
// orders them: after OPTIONS (and cobra's EXAMPLE), before SEE ALSO.
func insertSections(page string, s ManSections) string {
	var add strings.Builder
	for _, sec := range []struct{ title, text string }{
		{"EXIT STATUS", s.ExitStatus}, {"SIGNALS", s.Signals}, {"FILES", s.Files},
	} {
		if sec.text != "" {
			add.WriteString(".SH " + sec.title + "\n" + roff(sec.text))
		}
	}
	if i := strings.Index(page, ".SH SEE ALSO"); i >= 0 {
		return page[:i] + add.String() + page[i:]
	}
	return page + add.String()
}

// roff turns plain paragraphs into man macros: "TERM: text" lines become
// tagged paragraphs, other paragraphs .PP.
func roff(text string) string {
	var b strings.Builder
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		lines := strings.Split(para, "\n")
		if term, rest, ok := strings.Cut(lines[0], ": "); ok && strings.HasPrefix(term, "`") {
			b.WriteString(".TP\n\\fB" + escape(strings.Trim(term, "`")) + "\\fR\n")
			lines[0] = rest
		} else {
			b.WriteString(".PP\n")
		}
		for _, l := range lines {
			b.WriteString(escape(strings.TrimSpace(l)) + "\n")
		}
	}
	return b.String()
}

// escape makes text safe in a roff line: backslashes, dashes that must
// stay ASCII (options, paths) and a leading control character.
func escape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// ConfigManPage renders dsrlb.yaml(5): every field of the schema with the
// documentation the README's reference is generated from.
func ConfigManPage(version string, date time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH \"DSRLB.YAML\" \"5\" \"%s\" \"dsrlb %s\" \"dsrlb manual\"\n", date.Format("Jan 2006"), version)
	b.WriteString(".nh\n.ad l\n.SH NAME\ndsrlb.yaml \\- configuration of the dsrlb balancer (lbd) and backends (hostprep)\n")
	b.WriteString(".SH SYNOPSIS\n\\fB" + escape(config.DefaultPath) + "\\fR\n")
	b.WriteString(".SH DESCRIPTION\n" + roff(configDescription))
	b.WriteString(".SH FIELDS\n")
	for _, f := range config.Fields() {
		b.WriteString(".TP\n\\fB" + escape(f.Path) + "\\fR\n" + escape(f.Doc) + "\n")
	}
	b.WriteString(".SH EXAMPLE\n.PP\n.EX\n")
	for _, l := range strings.Split(strings.TrimSpace(configExample), "\n") {
		b.WriteString(escape(l) + "\n")
	}
	b.WriteString(".EE\n")
	b.WriteString(".SH FILES\n" + roff(configFiles))
	b.WriteString(".SH SEE ALSO\n\\fBlbd\\fP(8), \\fBlbd\\-validate\\fP(8), \\fBhostprep\\fP(8), \\fBhostprep\\-validate\\fP(8)\n")
	return b.String()
}

const configDescription = `
One YAML file describes the virtual services: lbd (on the balancers) reads all of it; hostprep (on the backends) reads the services and finds the VIPs whose servers are this host's addresses. The same file can be shipped to every host.

Parsing is strict: unknown fields (with a suggestion for typos), repeated fields and wrong types are errors, reported as file:line: field: what is wrong. Durations carry a unit (10s, 500ms); a bare number is refused. "lbd validate" and "hostprep validate" check a file without touching the host, like "haproxy -c".

Rules checked besides each field's range: unique service names, and server names within a service; one service per VIP, protocol and port (a service without ports takes every port not taken by another); a server has its VIP's address family and is not itself a VIP; a check timeout shorter than its interval; at least one server; a Maglev table of at least 10 slots per server.

A field written as name[] is a list of mappings; its fields are listed as name[].field.
`

const configExample = `
balancer:
  interface: eth0
services:
  - name: exchange
    vip: 192.0.2.10
    protocol: tcp
    ports: []                # every port of the VIP
    balance: roundrobin
    check: {type: tcp, port: 443, interval: 10s, timeout: 2s}
    servers:
      - {name: exchange1, address: 192.0.2.11, weight: 10}
      - {name: exchange2, address: 192.0.2.12, weight: 10}
`

const configFiles = "`/etc/dsrlb/dsrlb.yaml`: the configuration (a conffile of dsrlb-common: upgrades keep your edits).\n\n" +
	"`/usr/share/doc/dsrlb-common/examples/dsrlb.yaml`: the commented example the package installs."
