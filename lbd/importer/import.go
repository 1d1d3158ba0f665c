package importer

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/dsrlb/dsrlb/shared/config"
)

// Tools are the sources Import reads.
var Tools = []string{"aloha", "keepalived", "ipvsadm"}

// Options are what the command line adds to a source.
type Options struct {
	Interface string     // balancer.interface; overrides what the source says
	Aloha     AlohaFlags // addresses an ALOHA file may not name
	FS        FS         // for keepalived includes; zero: the host's file system
}

// HostFS reads the host's files: regular files only, bounded like a
// configuration, so an include of /dev/zero or a FIFO cannot hang import.
var HostFS = FS{ReadFile: readRegular, Glob: filepath.Glob}

func readRegular(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, config.MaxFileSize+1))
	if err == nil && len(data) > config.MaxFileSize {
		err = fmt.Errorf("%s is larger than %d bytes", name, config.MaxFileSize)
	}
	return data, err
}

// Import parses data (read from name, "-" for standard input) as tool's
// configuration and maps it onto dsrlb's schema. The error is for a source
// that cannot be read at all (broken syntax) or flags naming nothing
// (*FlagError); everything else is in the Result's notes.
func Import(tool, name string, data []byte, opts Options) (*Result, error) {
	m, err := Parse(tool, name, data, opts)
	if err != nil {
		return nil, err
	}
	if opts.Interface != "" {
		m.Interface = opts.Interface
	}
	return Map(m), nil
}

// Parse reads a source into the intermediate model without mapping it.
func Parse(tool, name string, data []byte, opts Options) (*Model, error) {
	if opts.FS.ReadFile == nil {
		opts.FS = HostFS
	}
	switch tool {
	case "keepalived":
		return ParseKeepalived(name, data, opts.FS)
	case "aloha":
		return ParseAloha(name, data, opts.Aloha)
	case "ipvsadm":
		return ParseIpvsadm(name, data)
	}
	return nil, fmt.Errorf("import %s: unknown source; give one of aloha, keepalived, ipvsadm", tool)
}

// Report writes one line per note, then the output's validation errors.
func (r *Result) Report(w io.Writer) {
	for _, n := range r.Notes {
		fmt.Fprintln(w, n)
	}
	if r.Invalid != nil {
		fmt.Fprintf(w, "the output does not validate (lines of the output):\n%v\n", r.Invalid)
	}
}

// sortNotes orders notes by file (in the order files first appear) and
// line, and drops repeats: a virtual_server_group's body is read once per
// VIP, but what it cannot carry is said once.
func sortNotes(ns Notes) Notes {
	files := map[string]int{}
	for _, n := range ns {
		if _, ok := files[n.At.File]; !ok {
			files[n.At.File] = len(files)
		}
	}
	sort.SliceStable(ns, func(i, j int) bool {
		fi, fj := files[ns[i].At.File], files[ns[j].At.File]
		if fi != fj {
			return fi < fj
		}
		return ns[i].At.Line < ns[j].At.Line
	})
	seen := map[Note]bool{}
	out := ns[:0]
	for _, n := range ns {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
