package cli

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

type sent struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

func captureJournal() (*journalHandler, *[]sent) {
	var got []sent
	h := newJournalHandler(slog.LevelInfo, func(m string, p journal.Priority, f map[string]string) error {
		got = append(got, sent{m, p, f})
		return nil
	}, nil)
	return h, &got
}

// TestJournalPriorities: every record reached the journal at one priority,
// so `journalctl -p warning` missed "backend out of rotation" (issue 13).
func TestJournalPriorities(t *testing.T) {
	h, got := captureJournal()
	log := slog.New(h)
	log.Debug("probe sent")
	log.Info("lbd ready", "services", 2)
	log.Warn("backend out of rotation", "backend", "web/web2", "reason", "tcp connect: refused")
	log.Error("reload rejected", "err", errors.New("t.yaml:3: bad"))
	if len(*got) != 3 {
		t.Fatalf("sent %d records, want 3 (debug filtered): %+v", len(*got), *got)
	}
	want := []journal.Priority{journal.PriInfo, journal.PriWarning, journal.PriErr}
	for i, s := range *got {
		if s.pri != want[i] {
			t.Errorf("%q sent at priority %d, want %d", s.msg, s.pri, want[i])
		}
		if s.fields["SYSLOG_IDENTIFIER"] != "lbd" {
			t.Errorf("%q: SYSLOG_IDENTIFIER %q", s.msg, s.fields["SYSLOG_IDENTIFIER"])
		}
	}
	w := (*got)[1]
	if w.fields["BACKEND"] != "web/web2" || w.fields["REASON"] != "tcp connect: refused" {
		t.Errorf("fields %v", w.fields)
	}
	if w.msg != `backend out of rotation backend=web/web2 reason="tcp connect: refused"` {
		t.Errorf("MESSAGE %q", w.msg)
	}
}

func TestJournalFieldsGroupsAndReserved(t *testing.T) {
	h, got := captureJournal()
	slog.New(h).With("pin-path", "/sys/fs/bpf/dsrlb").WithGroup("bgp").Info("x", "peer", "192.0.2.1", "message", "m", slog.Group("sess", "state", "up"))
	f := (*got)[0].fields
	for k, v := range map[string]string{"PIN_PATH": "/sys/fs/bpf/dsrlb", "BGP_PEER": "192.0.2.1", "BGP_MESSAGE": "m", "BGP_SESS_STATE": "up"} {
		if f[k] != v {
			t.Errorf("field %s = %q, want %q (all: %v)", k, f[k], v, f)
		}
	}
	h2, got2 := captureJournal()
	slog.New(h2).Info("y", "message", "shadow", "priority", "0", "2fast", "z")
	f = (*got2)[0].fields
	if f["LBD_MESSAGE"] != "shadow" || f["LBD_PRIORITY"] != "0" || f["LBD_2FAST"] != "z" || f["MESSAGE"] != "" || f["PRIORITY"] != "" {
		t.Errorf("reserved fields not kept apart: %v", f)
	}
	if (*got2)[0].pri != journal.PriInfo {
		t.Error("an attribute changed the priority")
	}
}

func TestJournalFallback(t *testing.T) {
	var buf bytes.Buffer
	h := newJournalHandler(slog.LevelInfo, func(string, journal.Priority, map[string]string) error { return errors.New("gone") }, &buf)
	slog.New(h).Warn("backend out of rotation", "backend", "a/b")
	if !strings.Contains(buf.String(), "WARN backend out of rotation backend=a/b (journald: gone)") {
		t.Errorf("fallback wrote %q", buf.String())
	}
}

func TestLogFormats(t *testing.T) {
	var buf bytes.Buffer
	t.Setenv("JOURNAL_STREAM", "")
	for format, want := range map[string]string{"text": "level=INFO msg=hi", "json": `"msg":"hi"`, "auto": "level=INFO msg=hi"} {
		buf.Reset()
		log, err := newLogger(&buf, format, slog.LevelInfo)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hi")
		if !strings.Contains(buf.String(), want) {
			t.Errorf("%s: %q lacks %q", format, buf.String(), want)
		}
	}
	if _, err := newLogger(&buf, "xml", slog.LevelInfo); err == nil || !strings.Contains(err.Error(), "give auto, text, json or journal") {
		t.Errorf("bad format: %v", err)
	}
}
