package importer

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// This file reads keepalived's configuration grammar into a tree of
// statements (keepalived.conf(5)): words separated by blanks, '#' and '!'
// comments to the end of the line, quoted strings ("..." or '...', joined
// with adjacent characters, backslash escapes), blocks in braces nested to
// any depth, and include directives whose globs are relative to the
// directory of the file that includes them.

// FS is what the keepalived reader needs of the file system; tests and the
// fuzzer give one that never touches the host.
type FS struct {
	ReadFile func(name string) ([]byte, error)
	Glob     func(pattern string) ([]string, error)
}

// maxIncludeDepth bounds nested includes (keepalived itself stops at 32 too).
const maxIncludeDepth = 32

// stmt is one statement: its words and, when it opens a block, the
// statements of the block.
type stmt struct {
	At    Pos
	Words []string
	Block []*stmt // nil: no block; non-nil (maybe empty): a block
}

func (s *stmt) kw() string { return s.Words[0] }

// text is the statement as written, for notes.
func (s *stmt) text() string {
	t := strings.Join(s.Words, " ")
	if len(t) > 60 {
		t = t[:57] + "..."
	}
	return t
}

type token struct {
	at   Pos
	text string
	kind byte // 'w' word, '{', '}', '\n' end of line
}

// kaReader turns files into tokens, following includes.
type kaReader struct {
	fs    FS
	notes Notes
	stack []string // files being read, for loops
}

// lexFile appends the tokens of one file (and of what it includes).
func (r *kaReader) lexFile(name string, data []byte, toks []token) ([]token, error) {
	if len(r.stack) >= maxIncludeDepth {
		return toks, fmt.Errorf("%s: includes nested deeper than %d; is there a loop?", name, maxIncludeDepth)
	}
	r.stack = append(r.stack, name)
	defer func() { r.stack = r.stack[:len(r.stack)-1] }()
	for i, line := range strings.Split(string(data), "\n") {
		at := Pos{File: name, Line: i + 1}
		words, err := lexLine(at, strings.TrimSuffix(line, "\r"))
		if err != nil {
			return toks, err
		}
		if len(words) >= 2 && words[0].kind == 'w' && isInclude(words[0].text) {
			if toks, err = r.include(at, name, words, toks); err != nil {
				return toks, err
			}
			continue
		}
		toks = append(toks, words...)
		toks = append(toks, token{at: at, kind: '\n'})
	}
	return toks, nil
}

func isInclude(w string) bool {
	switch w {
	case "include", "includer", "includem", "includew", "includeb", "includea":
		return true
	}
	return false
}

// include expands one include directive in place.
func (r *kaReader) include(at Pos, from string, words []token, toks []token) ([]token, error) {
	pattern := words[1].text
	if !filepath.IsAbs(pattern) && from != "-" {
		pattern = filepath.Join(filepath.Dir(from), pattern)
	}
	matches, err := r.fs.Glob(pattern)
	if err != nil || len(matches) == 0 {
		r.notes.add(at, "include "+words[1].text, "no file matches %s: nothing included from it", pattern)
		return toks, nil
	}
	sort.Strings(matches)
	for _, m := range matches {
		for _, open := range r.stack {
			if open == m {
				return toks, fmt.Errorf("%s: include %s: %s includes itself", at, words[1].text, m)
			}
		}
		data, err := r.fs.ReadFile(m)
		if err != nil {
			r.notes.add(at, "include "+m, "cannot be read (%v): nothing included from it", err)
			continue
		}
		if toks, err = r.lexFile(m, data, toks); err != nil {
			return toks, err
		}
	}
	return toks, nil
}

// lexLine splits one line into words and braces, dropping comments.
func lexLine(at Pos, line string) ([]token, error) {
	var toks []token
	var word strings.Builder
	inWord := false
	var quote rune
	flush := func() {
		if inWord {
			toks = append(toks, token{at: at, text: word.String(), kind: 'w'})
			word.Reset()
			inWord = false
		}
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case quote != 0 && c == '\\' && i+1 < len(rs):
			i++
			word.WriteRune(rs[i])
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(c)
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case c == '#' || c == '!':
			flush()
			return toks, nil
		case c == ' ' || c == '\t':
			flush()
		case c == '{' || c == '}':
			flush()
			toks = append(toks, token{at: at, text: string(c), kind: byte(c)})
		default:
			word.WriteRune(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%s: unterminated quoted string: close it with %c", at, quote)
	}
	flush()
	return toks, nil
}

// parseTree builds statements from tokens: a statement is the words of one
// line; a '{' (on the same line or the next) opens its block.
func parseTree(toks []token) ([]*stmt, error) {
	p := &treeParser{toks: toks}
	list, err := p.block(0)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("%s: '}' closes no block: remove it", p.toks[p.i].at)
	}
	return list, nil
}

type treeParser struct {
	toks []token
	i    int
}

var errDepth = errors.New("blocks nested too deep")

func (p *treeParser) block(depth int) ([]*stmt, error) {
	if depth > 64 {
		return nil, fmt.Errorf("%s: %w", p.toks[p.i-1].at, errDepth)
	}
	list := []*stmt{}
	var cur *stmt
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		switch t.kind {
		case 'w':
			if cur == nil || cur.Block != nil {
				cur = &stmt{At: t.at}
				list = append(list, cur)
			}
			cur.Words = append(cur.Words, t.text)
			p.i++
		case '\n':
			p.i++
			if cur != nil && cur.Block == nil && p.nextIsOpen() {
				continue // "keyword\n{": the brace on the next line opens cur's block
			}
			cur = nil
		case '{':
			p.i++
			if cur == nil || cur.Block != nil {
				return nil, fmt.Errorf("%s: '{' opens a block with no keyword before it", t.at)
			}
			b, err := p.block(depth + 1)
			if err != nil {
				return nil, err
			}
			if p.i >= len(p.toks) {
				return nil, fmt.Errorf("%s: block of %q is not closed: add '}'", cur.At, cur.Words[0])
			}
			p.i++ // the '}'
			cur.Block = b
		case '}':
			return list, nil // the caller consumes it; parseTree reports a stray one
		}
	}
	return list, nil
}

func (p *treeParser) nextIsOpen() bool {
	for j := p.i; j < len(p.toks); j++ {
		switch p.toks[j].kind {
		case '\n':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}
