package nettest

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// TestDo: fn runs in the namespace, the caller's thread never leaves its
// own, and a namespace made by Create is gone when its test ends.
func TestDo(t *testing.T) {
	var name string
	t.Run("in", func(t *testing.T) {
		n := Create(t, "dsrlbnt-")
		name = n.Name
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		before, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer before.Close()
		var inside bool
		if err := n.Do(func() error {
			cur, err := netns.Get()
			if err != nil {
				return err
			}
			defer cur.Close()
			inside = cur.Equal(n.Handle)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !inside {
			t.Error("fn did not run in the namespace")
		}
		after, _ := netns.Get()
		defer after.Close()
		if !after.Equal(before) {
			t.Error("the calling thread changed namespace")
		}
		if err := DoIn(name, func() error { return nil }); err != nil {
			t.Errorf("DoIn by name: %v", err)
		}
	})
	if h, err := netns.GetFromName(name); err == nil {
		h.Close()
		t.Errorf("namespace %s still exists after its test ended", name)
	}
}

// policyTB records what SkipOrFail did first (Fatalf and Skip end a
// real test there; here they only record).
type policyTB struct {
	testing.TB
	first string
}

func (p *policyTB) Helper() {}
func (p *policyTB) Fatalf(string, ...any) {
	if p.first == "" {
		p.first = "fail"
	}
}
func (p *policyTB) Skip(...any) {
	if p.first == "" {
		p.first = "skip"
	}
}

// TestSkipOrFail: skip outside CI, fail under CI=true.
func TestSkipOrFail(t *testing.T) {
	for ci, want := range map[string]string{"": "skip", "false": "skip", "true": "fail"} {
		t.Setenv("CI", ci)
		var p policyTB
		SkipOrFail(&p, "needs something")
		if p.first != want {
			t.Errorf("CI=%q: %s, want %s", ci, p.first, want)
		}
	}
}
