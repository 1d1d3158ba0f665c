package config

import (
	"bytes"
	"slices"
	"sync"

	"go.yaml.in/yaml/v3"
)

// A Loader parses the same file again and again, as lbd does on every
// reload, and parses again only the services whose text changed: a reload
// that changes one service of 1,000 then costs one service's YAML, not the
// whole file's (yaml.v3 building the node tree of 3,000 servers was most of
// such a reload; see BENCHMARKS.md, "Control plane at scale").
//
// It cuts the file where it is plain to cut, by lines: the top-level
// `services:` key on a line of its own, then list items each starting with
// "- " at one indentation. Each item is parsed on its own and remembered by
// its exact text; the rest of the file (the skeleton, items blanked out so
// lines keep their numbers) is parsed whole every time. Anything that could
// make a piece read differently alone than in the file makes the Loader
// parse the file whole, as Parse does: document markers or directives,
// other line breaks than \n, tabs starting a line, a piece that does not
// parse alone (a quote or bracket open across a cut), anchors, aliases,
// tags, block scalars, or a skeleton in which `services:` is not the empty
// key the cut left. A file with any error is parsed whole too, so every
// message is exactly Parse's. When most items are new (the first file, a
// rewrite of every service), one parse of the whole file is cheaper than
// one per item: its items are remembered as pieces if the tree shows the
// cut was sound (see whole).
//
// The zero Loader is ready; it is safe for concurrent use.
type Loader struct {
	mu sync.Mutex
	// items are the services of the last file loaded, by the text of
	// their list item, each validated on its own, with lines counted
	// from 1 at the item's first line.
	items map[string]*Service
	// parsed is how many items the last call parsed (for tests).
	parsed int
}

// Load reads path and parses it like Load, reusing what it can of the
// previous file.
func (l *Loader) Load(path string) (*Config, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return l.Parse(path, data)
}

// Parse is Parse, reusing the services whose text is unchanged since the
// last successful call.
func (l *Loader) Parse(name string, data []byte) (*Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cut, ok := cutServices(data); ok {
		// Most items new (the first file, a rewrite): one parse of the
		// whole file costs less than one per item.
		parse := l.pieces
		if l.misses(data, cut) > len(cut.items)/2 {
			parse = l.whole
		}
		if cfg, items, ok := parse(name, data, cut); ok {
			l.items = items
			return cfg, nil
		}
	}
	cfg, err := Parse(name, data)
	if err == nil {
		l.items = nil // cut anew next time; the old pieces are stale
	}
	return cfg, err
}

func (l *Loader) misses(data []byte, cut cut) int {
	n := 0
	for _, it := range cut.items {
		if l.items[string(data[it.start:it.end])] == nil {
			n++
		}
	}
	return n
}

// whole parses data in one piece and remembers its items as pieces, when
// the tree shows the cut is sound: services: at its line in the top-level
// mapping, the next top-level key on the line after the list, and one list
// item starting in each piece. Items start only on lines beginning with
// "- " at the list's indentation, the pieces' first lines; so each of those
// lines starts an item, none lies inside a quote or bracket of the item
// before, and each piece holds its item alone, as pieces would parse it.
func (l *Loader) whole(name string, data []byte, cut cut) (*Config, map[string]*Service, bool) {
	p := newParser(name)
	root, ok := p.tree(data)
	if !ok {
		return nil, nil, false
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Value == "services" && k.Line == cut.keyLine {
			if i+2 < len(root.Content) && root.Content[i+2].Line != cut.endLine || i+2 >= len(root.Content) && cut.endLine != 0 {
				return nil, nil, false
			}
			list = root.Content[i+1]
		}
	}
	if list == nil || list.Kind != yaml.SequenceNode || !plain(list) || list.Style&yaml.FlowStyle != 0 || len(list.Content) != len(cut.items) {
		return nil, nil, false
	}
	for k, it := range list.Content {
		if it.Line < cut.items[k].line || k+1 < len(cut.items) && it.Line >= cut.items[k+1].line || hasBlockScalar(it) {
			return nil, nil, false
		}
	}
	var wf wireFile
	if !(fastDecoder{}).file(root, &wf) {
		return nil, nil, false
	}
	items := make(map[string]*Service, len(cut.items))
	svcs := make([]Service, len(cut.items))
	for k, it := range cut.items {
		q := newParser(name)
		svcs[k] = q.service("services[0]", &wf.Services[k])
		if len(q.errs) > 0 {
			return nil, nil, false
		}
		alone := svcs[k].moved(1 - it.line) // lines from 1 at the item's first
		items[string(data[it.start:it.end])] = &alone
	}
	l.parsed = len(items)
	cfg := p.assemble(&wf, len(svcs), func(k int) Service { return svcs[k] })
	return cfg, items, len(p.errs) == 0
}

// pieces parses data by pieces, the skeleton and the items not seen in
// the last file; false when anything in it is not fast-decodable and valid.
func (l *Loader) pieces(name string, data []byte, cut cut) (*Config, map[string]*Service, bool) {
	p := newParser(name)
	root, ok := p.tree(cut.skeleton)
	if !ok || !emptyKeyAt(root, "services", cut.keyLine) {
		return nil, nil, false
	}
	var wf wireFile
	if !(fastDecoder{}).file(root, &wf) {
		return nil, nil, false
	}
	l.parsed = 0
	items := make(map[string]*Service, len(cut.items))
	svcs := make([]*Service, len(cut.items))
	for i, it := range cut.items {
		text := data[it.start:it.end]
		s := l.items[string(text)]
		if s == nil {
			if s, ok = parseItem(name, text); !ok {
				return nil, nil, false
			}
			l.parsed++
		}
		items[string(text)] = s
		svcs[i] = s
	}
	cfg := p.assemble(&wf, len(svcs), func(i int) Service { return svcs[i].moved(cut.items[i].line - 1) })
	return cfg, items, len(p.errs) == 0
}

// moved is a copy of s, whose lines count from 1 at its first line, for
// an item starting after line off of the file. The servers are copied for
// their lines; the other slices are shared, as nothing writes to a Config.
func (s *Service) moved(off int) Service {
	c := *s
	c.Line += off
	if c.checkLine != 0 {
		c.checkLine += off
	}
	c.Servers = slices.Clone(s.Servers)
	for j := range c.Servers {
		c.Servers[j].Line += off
	}
	return c
}

// parseItem parses and validates one list item of services: on its own,
// its text is a YAML list of one mapping at the indentation it has in the
// file. Validating a service on its own is the same as within its file
// (the rules across services apply to the whole); false for an error,
// which the whole file's parse will report with its path.
func parseItem(name string, text []byte) (*Service, bool) {
	// One document: cutServices refused the file if a line starts one.
	var doc yaml.Node
	if yaml.Unmarshal(text, &doc) != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, false
	}
	list := doc.Content[0]
	if list.Kind != yaml.SequenceNode || !plain(list) || list.Style&yaml.FlowStyle != 0 || len(list.Content) != 1 || hasBlockScalar(list) {
		return nil, false
	}
	var w wireService
	if !(fastDecoder{}).service(list.Content[0], &w) {
		return nil, false
	}
	p := newParser(name)
	s := p.service("services[0]", &w)
	return &s, len(p.errs) == 0
}

// hasBlockScalar reports whether a literal or folded scalar is in n: its
// value depends on the lines after it (chomping), which a cut may change.
func hasBlockScalar(n *yaml.Node) bool {
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return true
	}
	for _, c := range n.Content {
		if hasBlockScalar(c) {
			return true
		}
	}
	return false
}

// emptyKeyAt reports whether mapping m has key at line, once, with the
// empty value a blanked-out list leaves.
func emptyKeyAt(m *yaml.Node, key string, line int) bool {
	found := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Value != key {
			continue
		}
		if found || k.Line != line || k.Style != 0 || !isNull(v) || v.Value != "" || !plain(v) {
			return false
		}
		found = true
	}
	return found
}

// cut is a file cut into its skeleton and the byte ranges of the
// services: list items.
type cut struct {
	skeleton []byte
	keyLine  int // the line of `services:`
	endLine  int // the line after the list (a top-level key), 0 at the end of the file
	items    []span
}

type span struct{ start, end, line int } // bytes [start, end), first line

// cutServices finds the services: items by lines (see Loader). False when
// the file is not of the plain shape.
func cutServices(data []byte) (cut, bool) {
	var c cut
	for _, bad := range []string{"\r", "\u0085", "\u2028", "\u2029", "\ufeff"} {
		if bytes.Contains(data, []byte(bad)) {
			return c, false // other line breaks than \n, or a byte order mark
		}
	}
	const (
		before = iota // the region is not reached yet
		head          // after services:, before its first item
		inList
		after
	)
	state, indent := before, -1
	regionStart, regionEnd := -1, len(data)
	line := 0
	for pos := 0; pos < len(data); {
		l, next := data[pos:], len(data)
		if end := bytes.IndexByte(l, '\n'); end >= 0 {
			l, next = l[:end], pos+end+1
		}
		line++
		if bytes.HasPrefix(l, []byte("---")) || bytes.HasPrefix(l, []byte("...")) || bytes.HasPrefix(l, []byte("%")) {
			return c, false // documents and directives: Parse says what it thinks
		}
		n := 0
		for n < len(l) && l[n] == ' ' {
			n++
		}
		rest := l[n:]
		if len(rest) > 0 && rest[0] == '\t' {
			return c, false
		}
		content := len(rest) > 0 && rest[0] != '#'
		switch {
		case n == 0 && isServicesKey(l):
			if state != before {
				return c, false // twice: Parse reports it
			}
			state, c.keyLine = head, line
		case state == before || state == after || !content:
			// outside the list, or a blank or comment line: the piece
			// it is in keeps it
		case n == 0 && !isItem(rest) || n < indent:
			if n != 0 {
				return c, false
			}
			if state == head {
				return c, false // services: has no list under it
			}
			state, regionEnd, c.endLine = after, pos, line
		case state == head:
			if !isItem(rest) {
				return c, false
			}
			state, indent, regionStart = inList, n, pos
			c.items = append(c.items, span{start: pos, line: line})
		case n == indent:
			if !isItem(rest) {
				return c, false
			}
			c.items[len(c.items)-1].end = pos
			c.items = append(c.items, span{start: pos, line: line})
		}
		pos = next
	}
	if state < inList || len(c.items) == 0 {
		return c, false
	}
	c.items[len(c.items)-1].end = regionEnd
	// The skeleton: the file with the list replaced by as many line
	// breaks, so every line keeps its number.
	region := data[regionStart:regionEnd]
	c.skeleton = make([]byte, 0, len(data)-len(region)+bytes.Count(region, []byte("\n")))
	c.skeleton = append(c.skeleton, data[:regionStart]...)
	c.skeleton = append(c.skeleton, bytes.Repeat([]byte("\n"), bytes.Count(region, []byte("\n")))...)
	c.skeleton = append(c.skeleton, data[regionEnd:]...)
	return c, true
}

// isServicesKey: `services:` alone on its line, or before a comment.
func isServicesKey(l []byte) bool {
	rest, ok := bytes.CutPrefix(l, []byte("services:"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " ")
	return len(rest) == 0 || rest[0] == '#' && len(rest) < len(l)-len("services:")
}

// isItem: a list item's first line, "- ..." or "-" alone.
func isItem(rest []byte) bool {
	return len(rest) > 0 && rest[0] == '-' && (len(rest) == 1 || rest[1] == ' ')
}
