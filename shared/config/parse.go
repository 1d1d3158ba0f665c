package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds what Load reads: a real file is a few KiB, and an
// unbounded read of a wrong path (a device, a log) must not hang the daemon.
const MaxFileSize = 16 << 20

// Load reads, parses and validates the file at path. The error, when not
// nil, is either an Errors listing every problem or a plain read error.
func Load(path string) (*Config, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w (give another file with --config)", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("read config %s: larger than %d bytes; is this the right file?", path, MaxFileSize)
	}
	return data, nil
}

// Parse parses and validates data; name is used in messages as the file name.
func Parse(name string, data []byte) (*Config, error) {
	p := newParser(name)
	root, ok := p.tree(data)
	if !ok {
		return nil, p.errs.sorted()
	}
	if cfg, ok := p.fast(root, fastDecoder{}); ok {
		return cfg, nil
	}
	return newParser(name).reference(root)
}

// fast decodes root with the fast decoder and validates it: a Config when
// both succeed, else false, and the reference path must say what is wrong.
func (p *parser) fast(root *yaml.Node, fd fastDecoder) (*Config, bool) {
	var wf wireFile
	if !fd.file(root, &wf) {
		return nil, false
	}
	return p.validated(&wf)
}

// validated validates wf, which must have come from the fast decoder: its
// messages would lack lines (only the reference path records the line of
// every field), so any error means false.
func (p *parser) validated(wf *wireFile) (*Config, bool) {
	cfg := p.validate(wf)
	return cfg, len(p.errs) == 0
}

// reference decodes root the thorough way: the walk reports unknown and
// repeated keys and records the line of every field, yaml.v3 decodes, and
// validation points at those lines.
func (p *parser) reference(root *yaml.Node) (*Config, error) {
	wf, ok := p.decode(root)
	if !ok {
		return nil, p.errs.sorted()
	}
	cfg := p.validate(wf)
	if len(p.errs) > 0 {
		return nil, p.errs.sorted()
	}
	return cfg, nil
}

// parser carries what one parse learns: every error so far and the line of
// every field, so validation can point at the line a user must change.
type parser struct {
	file    string
	errs    Errors
	pos     map[string]int  // field path -> line
	badPath map[string]bool // paths with a type error: no further messages for them
	fatal   bool            // decoded values are unreliable (type error, repeated key)
}

func newParser(file string) *parser { return &parser{file: file, pos: map[string]int{}} }

func (p *parser) errAt(line int, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// errf reports a problem with the field at path, at that field's line or,
// when the field is absent, at the line of the nearest enclosing field.
func (p *parser) errf(path, format string, args ...any) {
	for q := path; ; {
		if p.badPath[q] {
			return
		}
		if line, ok := p.pos[q]; ok {
			p.errAt(line, path, format, args...)
			return
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			p.errAt(0, path, format, args...)
			return
		}
		q = q[:i]
	}
}

// tree parses data into its root mapping: one YAML document whose top
// level is a mapping.
func (p *parser) tree(data []byte) (*yaml.Node, bool) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errAt(0, "", "the file is empty; start from the example in /usr/share/doc/dsrlb-common/examples/dsrlb.yaml (fields: man 5 dsrlb.yaml)")
		} else {
			p.syntaxError(err)
		}
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errAt(extra.Line, "", "a second YAML document starts here; keep one document per file")
		return nil, false
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		p.errAt(root.Line, "", "the top level must be a mapping with balancer: and services:")
		return nil, false
	}
	return root, true
}

// decode walks root (unknown and repeated keys, lines) and decodes it.
func (p *parser) decode(root *yaml.Node) (*wireFile, bool) {
	p.walk(root, reflect.TypeOf(wireFile{}), "")
	var wf wireFile
	if err := root.Decode(&wf); err != nil {
		p.typeErrors(err)
	}
	if p.fatal {
		// Type errors leave zero values behind; validating them would only
		// add noise. Unknown-field errors alone still allow validation.
		return nil, false
	}
	p.setLines(&wf)
	return &wf, true
}

// setLines copies the lines the walk recorded into the wire values, where
// validation reads them (the fast decoder sets them as it goes).
func (p *parser) setLines(wf *wireFile) {
	wf.balancerLine = p.pos["balancer"]
	for i := range wf.Services {
		s := &wf.Services[i]
		path := "services[" + strconv.Itoa(i) + "]"
		s.line = p.pos[path]
		if s.Check != nil {
			s.Check.line = p.pos[path+".check"]
		}
		for j := range s.Servers {
			s.Servers[j].line = p.pos[path+".servers["+strconv.Itoa(j)+"]"]
		}
		for j := range s.Fallback {
			s.Fallback[j].line = p.pos[path+".fallback["+strconv.Itoa(j)+"]"]
		}
	}
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func (p *parser) syntaxError(err error) {
	msg := err.Error()
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errAt(line, "", "YAML syntax: %s", m[2])
		return
	}
	p.errAt(0, "", "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}

var unmarshalRE = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.*)$")

// typeErrors turns yaml's "cannot unmarshal" messages into ones naming the field.
func (p *parser) typeErrors(err error) {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		p.syntaxError(err)
		return
	}
	if p.badPath == nil {
		p.badPath = map[string]bool{}
	}
	// yaml reports lines, not fields: name the deepest field common to
	// everything on that line (one field in block style, the enclosing
	// mapping in flow style).
	byLine := map[int]string{}
	for path, line := range p.pos {
		if old, ok := byLine[line]; ok {
			byLine[line] = commonPath(old, path)
		} else {
			byLine[line] = path
		}
	}
	for _, s := range te.Errors {
		m := lineRE.FindStringSubmatch(s)
		if m == nil {
			p.errAt(0, "", "%s", s)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		if strings.Contains(msg, "already defined at line") {
			continue // walk reported the repeated key already
		}
		if u := unmarshalRE.FindStringSubmatch(msg); u != nil {
			msg = fmt.Sprintf("%q is %s, expected %s", u[2], yamlKind(u[1]), goKind(u[3]))
		}
		path := byLine[line]
		p.badPath[path] = true
		p.fatal = true
		p.errAt(line, path, "%s", msg)
	}
}

func yamlKind(tag string) string {
	switch tag {
	case "str":
		return "a string"
	case "int":
		return "a number"
	case "bool":
		return "a boolean"
	case "map":
		return "a mapping"
	case "seq":
		return "a list"
	case "float":
		return "a decimal number"
	}
	return "a " + tag
}

func goKind(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list such as [80, 443]"
	case strings.Contains(t, "int"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "config."):
		return "a mapping of its fields"
	}
	return t
}

// walk checks every mapping key against the wire type it decodes into:
// unknown and repeated keys are errors (with a suggestion for typos), and the
// line of every field is recorded for later messages.
func (p *parser) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		p.walkMapping(n, t, path)
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			p.pos[ip] = item.Line
			p.walk(item, t.Elem(), ip)
		}
	}
}

func (p *parser) walkMapping(n *yaml.Node, t reflect.Type, path string) {
	fs := fieldsOf(t)
	fields, names := fs.byName, fs.names
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		where := path
		if where == "" {
			where = "top level"
		}
		if first, dup := seen[k.Value]; dup {
			p.errAt(k.Line, where, "field %q given twice (first at line %d); keep one", k.Value, first)
			p.fatal = true
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			if s := suggest(k.Value, names); s != "" {
				p.errAt(k.Line, where, "unknown field %q (did you mean %q?)", k.Value, s)
			} else {
				p.errAt(k.Line, where, "unknown field %q (known fields: %s)", k.Value, strings.Join(names, ", "))
			}
			continue
		}
		fp := k.Value
		if path != "" {
			fp = path + "." + k.Value
		}
		p.pos[fp] = k.Line
		p.walk(v, f.Type, fp)
	}
}

// fieldSet is the keys a wire type takes, computed once per type.
type fieldSet struct {
	byName map[string]reflect.StructField
	names  []string // in declaration order, for messages
}

var fieldSets sync.Map // reflect.Type -> *fieldSet

func fieldsOf(t reflect.Type) *fieldSet {
	if fs, ok := fieldSets.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{byName: map[string]reflect.StructField{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue // the parser's own bookkeeping (lines)
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		fs.byName[name] = f
		fs.names = append(fs.names, name)
	}
	fieldSets.Store(t, fs)
	return fs
}

// commonPath returns the longest field path that both a and b lie under.
func commonPath(a, b string) string {
	for !strings.HasPrefix(b+".", a+".") && !strings.HasPrefix(b+"[", a+"[") && a != b {
		i := strings.LastIndexAny(a, ".[")
		if i < 0 {
			return ""
		}
		a = a[:i]
	}
	return a
}
