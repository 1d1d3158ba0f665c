package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shipped lists, per package, the man pages, completions, monitoring
// files and guides a user finds after installing it (dpkg-deb -c paths).
var shipped = map[string][]string{
	"dsrlb-common": {"./usr/share/man/man5/dsrlb.yaml.5.gz", "./usr/share/doc/dsrlb-common/quickstart.md",
		"./usr/share/doc/dsrlb-common/troubleshooting.md", "./usr/share/doc/dsrlb-common/upgrade.md",
		"./usr/share/doc/dsrlb-common/monitoring.md", "./usr/share/doc/dsrlb-common/status-json.md",
		"./usr/share/doc/dsrlb-common/checks.md", "./usr/share/doc/dsrlb-common/examples/dsrlb.yaml"},
	"dsrlb-lbd": {"./usr/share/man/man8/lbd.8.gz", "./usr/share/man/man8/lbd-run.8.gz", "./usr/share/man/man8/lbd-status.8.gz", "./usr/share/man/man8/lbd-flows.8.gz",
		"./usr/share/bash-completion/completions/lbd", "./usr/share/zsh/vendor-completions/_lbd",
		"./usr/share/fish/vendor_completions.d/lbd.fish",
		"./usr/share/dsrlb/monitoring/dsrlb-dashboard.json", "./usr/share/dsrlb/monitoring/dsrlb-alerts.yml"},
	"dsrlb-hostprep": {"./usr/share/man/man8/hostprep.8.gz", "./usr/share/man/man8/hostprep-apply.8.gz",
		"./usr/share/bash-completion/completions/hostprep", "./usr/share/zsh/vendor-completions/_hostprep",
		"./usr/share/fish/vendor_completions.d/hostprep.fish"},
}

// TestDocsShipped: man pages (titled per command, with the release
// version, not "dev"), completions, monitoring files and guides are in
// the packages, at the paths each distribution reads them from.
func TestDocsShipped(t *testing.T) {
	rel := release(t)
	for pkg, deb := range debs(rel) {
		list := run(t, "dpkg-deb", "-c", deb)
		for _, f := range shipped[pkg] {
			if !strings.Contains(list, " "+f+"\n") {
				t.Errorf("%s lacks %s", pkg, f)
			}
		}
	}
	root := t.TempDir()
	for _, deb := range debs(rel) {
		run(t, "dpkg-deb", "-x", deb, root)
	}
	for page, title := range map[string]string{"man8/lbd-run.8.gz": `"LBD-RUN" "8"`, "man8/hostprep-check.8.gz": `"HOSTPREP-CHECK" "8"`,
		"man8/lbd.8.gz": `"LBD" "8"`, "man5/dsrlb.yaml.5.gz": `"DSRLB.YAML" "5"`} {
		text := run(t, "gzip", "-dc", filepath.Join(root, "usr/share/man", page))
		th := strings.SplitN(text, "\n.SH", 2)[0]
		if !strings.Contains(th, ".TH "+title) || !strings.Contains(th, `"dsrlb `+version+`"`) {
			t.Errorf("%s: header %q, want title %s and dsrlb %s", page, th, title, version)
		}
		if strings.Contains(text, "dsrlb dev") {
			t.Errorf("%s says dsrlb dev", page)
		}
	}
	for _, bin := range []string{"lbd", "hostprep"} {
		script := filepath.Join(root, "usr/share/bash-completion/completions", bin)
		out, err := exec.Command("bash", "-c", `source "$1" && complete -p "$2"`, "-", script, bin).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "__start_"+bin) {
			t.Errorf("bash completion for %s does not register: %v\n%s", bin, err, out)
		}
		if b, err := os.ReadFile(filepath.Join(root, "usr/share/zsh/vendor-completions", "_"+bin)); err != nil || !strings.HasPrefix(string(b), "#compdef "+bin) {
			t.Errorf("zsh completion for %s: %v %.40q", bin, err, b)
		}
	}
	for _, pkg := range []string{"dsrlb-lbd", "dsrlb-hostprep"} {
		bin := strings.TrimPrefix(pkg, "dsrlb-")
		l := run(t, "rpm", "-qpl", filepath.Join(rel, pkg+"-"+version+"-1.x86_64.rpm"))
		for _, f := range []string{"/usr/share/zsh/site-functions/_" + bin, "/usr/share/bash-completion/completions/" + bin, "/usr/share/man/man8/" + bin + ".8.gz"} {
			if !strings.Contains(l, f+"\n") {
				t.Errorf("rpm %s lacks %s", pkg, f)
			}
		}
	}
}
