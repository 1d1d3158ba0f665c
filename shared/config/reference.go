package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Field is one field of the configuration file and its documentation.
type Field struct {
	Path string // e.g. services[].servers[].weight; a list of mappings ends in []
	Doc  string
}

// Fields lists every field of the schema, in file order, with the
// documentation of its wire type: the one source of the README's
// reference and of dsrlb.yaml(5).
func Fields() []Field {
	var out []Field
	walkFields(&out, reflect.TypeOf(wireFile{}), "")
	return out
}

// Reference renders the configuration reference (a Markdown table of every
// field with its documentation) from the wire types, so README.md cannot
// drift from the schema: a test compares the two.
func Reference() string {
	var b strings.Builder
	b.WriteString("| field | meaning |\n|---|---|\n")
	for _, f := range Fields() {
		fmt.Fprintf(&b, "| `%s` | %s |\n", f.Path, strings.ReplaceAll(f.Doc, "|", "\\|"))
	}
	return b.String()
}

func walkFields(out *[]Field, t reflect.Type, prefix string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue // bookkeeping of the parser (lines), not a field of the file
		}
		name := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		shown := name
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			shown += "[]"
		}
		*out = append(*out, Field{Path: shown, Doc: f.Tag.Get("doc")})
		switch {
		case ft.Kind() == reflect.Struct:
			walkFields(out, ft, name+".")
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			walkFields(out, ft.Elem(), name+"[].")
		}
	}
}
