package cli

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
)

func TestParseSet(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"web/b1", "drain"}, ""},
		{[]string{"web/b1", "weight", "0"}, ""},
		{[]string{"web/b1", "weight", "256"}, ""},
		{[]string{"web/b1", "weight", "257"}, `weight "257": give a whole number from 0 to 256`},
		{[]string{"web/b1", "weight", "-1"}, `weight "-1"`},
		{[]string{"web/b1", "weight"}, "weight needs a value"},
		{[]string{"web/b1", "drain", "now"}, "drain takes no value"},
		{[]string{"web", "drain"}, `"web": give SERVICE/SERVER`},
		{[]string{"web/a/b", "drain"}, "give SERVICE/SERVER"},
		{[]string{"web/b1", "stop"}, `"stop": give drain, maint, ready or weight N`},
	} {
		req, err := parseSet(c.args)
		if c.want == "" {
			if err != nil || req.Command != control.CmdSet || req.Service != "web" || req.Server != "b1" {
				t.Errorf("%v: %+v %v", c.args, req, err)
			}
			continue
		}
		var ee *cmdutil.ExitError
		if !errors.As(err, &ee) || ee.Code != ExitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want a usage error with %q", c.args, err, c.want)
		}
	}
}

func TestSetWithoutDaemon(t *testing.T) {
	var out bytes.Buffer
	sock := filepath.Join(t.TempDir(), "lbd-x.sock")
	err := askSet(context.Background(), &out, sock, control.Request{Command: control.CmdSet, Service: "web", Server: "b1", Action: "drain"})
	if err == nil || !strings.HasPrefix(err.Error(), "lbd is not running: ") || !strings.Contains(err.Error(), sock) {
		t.Errorf("askSet without a daemon: %v", err)
	}
}
