package daemon

import "testing"

// TestNoteFailureIgnoresNumbers: a failure whose text differs only in its
// numbers (a duration, an ephemeral port) is the same failure: no apply,
// no log line, no new LAST CHANGE per check; another failure is news.
func TestNoteFailureIgnoresNumbers(t *testing.T) {
	var o observed
	steps := []struct {
		why     string
		changed bool
	}{
		{"curl: (28) Connection timed out after 1001 milliseconds", true},
		{"curl: (28) Connection timed out after 1003 milliseconds", false},
		{"read tcp 192.0.2.1:40122->192.0.2.11:80: i/o timeout", true},
		{"read tcp 192.0.2.1:40991->192.0.2.11:80: i/o timeout", false},
		{"read tcp 192.0.2.1:40991->192.0.2.11:80: connection reset by peer", true},
	}
	for i, s := range steps {
		if got := o.noteFailure("web/a", s.why); got != s.changed {
			t.Errorf("step %d %q: changed %v, want %v", i, s.why, got, s.changed)
		}
	}
	if got := o.checkWhy["web/a"]; got != steps[4].why {
		t.Errorf("recorded %q, want the last new failure", got)
	}
}
