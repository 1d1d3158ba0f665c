package statusjson

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var snake = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// TestOneCasing: every key of the schema is snake_case, and every field
// has a json tag (an untagged field would be written in Go's casing).
func TestOneCasing(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || ty.PkgPath() != reflect.TypeFor[Status]().PkgPath() || seen[ty] {
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag == "" || tag == "-" {
				t.Errorf("%s.%s has no json name", path, f.Name)
				continue
			}
			if !snake.MatchString(tag) {
				t.Errorf("%s.%s is written %q, not snake_case", path, f.Name, tag)
			}
			walk(f.Type, path+"."+tag)
		}
	}
	walk(reflect.TypeFor[Status](), "status")
	walk(reflect.TypeFor[Live](), "live")
	walk(reflect.TypeFor[Flows](), "flows")
	if len(seen) < 14 {
		t.Fatalf("walked %d types: the walk missed the schema", len(seen))
	}
}

// TestEmptyListsAreLists: a consumer iterating services or conflicts gets
// [] rather than null when there are none, as lbd writes them.
func TestEmptyListsAreLists(t *testing.T) {
	b, err := json.Marshal(Status{SchemaVersion: SchemaVersion, Services: []Service{}, VIPConflicts: []VIPConflict{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"schema_version":1`, `"services":[]`, `"vip_conflicts":[]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}
