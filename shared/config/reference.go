package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Reference renders the configuration reference (a Markdown table of every
// field with its documentation) from the wire types, so README.md cannot
// drift from the schema: a test compares the two.
func Reference() string {
	var b strings.Builder
	b.WriteString("| field | meaning |\n|---|---|\n")
	refFields(&b, reflect.TypeOf(wireFile{}), "")
	return b.String()
}

func refFields(b *strings.Builder, t reflect.Type, prefix string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		shown := name
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			shown += "[]"
		}
		fmt.Fprintf(b, "| `%s` | %s |\n", shown, strings.ReplaceAll(f.Tag.Get("doc"), "|", "\\|"))
		switch {
		case ft.Kind() == reflect.Struct:
			refFields(b, ft, name+".")
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			refFields(b, ft.Elem(), name+"[].")
		}
	}
}
