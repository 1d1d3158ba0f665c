package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"unicode"

	"github.com/coreos/go-systemd/v22/journal"
)

// Log formats of `lbd run --log-format`.
const (
	LogAuto    = "auto"    // journal when stderr is the journal (JOURNAL_STREAM), text otherwise
	LogText    = "text"    // slog text lines on stderr
	LogJSON    = "json"    // slog JSON lines on stderr
	LogJournal = "journal" // native journal protocol: priorities and fields
)

// newLogger builds lbd run's logger. Under systemd stderr is a journal
// stream at one priority: every line, "backend down" included, would be
// "info" for journalctl -p. The native protocol sends each record's level
// as PRIORITY= and its attributes as fields (journalctl BACKEND=web/web2).
func newLogger(stderr io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case LogAuto, "":
		if onJournal, _ := journal.StderrIsJournalStream(); onJournal && journal.Enabled() {
			return slog.New(newJournalHandler(level, journal.Send, stderr)), nil
		}
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case LogText:
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case LogJSON:
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	case LogJournal:
		if !journal.Enabled() {
			return nil, fmt.Errorf("--log-format journal: no journald socket (/run/systemd/journal/socket): use text or json")
		}
		return slog.New(newJournalHandler(level, journal.Send, stderr)), nil
	}
	return nil, fmt.Errorf("--log-format %q: give auto, text, json or journal", format)
}

// sendFunc is journal.Send's shape, replaced in tests.
type sendFunc func(msg string, p journal.Priority, fields map[string]string) error

// journalHandler is a slog.Handler writing to journald. MESSAGE carries the
// message and the attributes as key=value (what journalctl shows); each
// attribute is also a field of its own, its key upper-cased, groups joined
// by "_".
type journalHandler struct {
	level    slog.Leveler
	send     sendFunc
	fallback io.Writer // when journald refuses a record
	attrs    []field   // from WithAttrs, already qualified
	prefix   string    // from WithGroup: "GROUP_" / "group."
	text     string
}

type field struct{ name, text, value string }

func newJournalHandler(level slog.Leveler, send sendFunc, fallback io.Writer) *journalHandler {
	return &journalHandler{level: level, send: send, fallback: fallback}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	fs := append([]field(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fs = flatten(fs, h.prefix, h.text, a)
		return true
	})
	var msg strings.Builder
	msg.WriteString(r.Message)
	vars := map[string]string{"SYSLOG_IDENTIFIER": "lbd"}
	for _, f := range fs {
		fmt.Fprintf(&msg, " %s=%s", f.text, quote(f.value))
		vars[f.name] = f.value
	}
	if err := h.send(msg.String(), priority(r.Level), vars); err != nil {
		fmt.Fprintf(h.fallback, "%s %s (journald: %v)\n", r.Level, msg.String(), err)
	}
	return nil
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]field(nil), h.attrs...)
	for _, a := range as {
		c.attrs = flatten(c.attrs, h.prefix, h.text, a)
	}
	return &c
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix += fieldName(name) + "_"
	c.text += name + "."
	return &c
}

func flatten(fs []field, prefix, text string, a slog.Attr) []field {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return fs
	}
	if a.Value.Kind() == slog.KindGroup {
		p, t := prefix, text
		if a.Key != "" {
			p, t = prefix+fieldName(a.Key)+"_", text+a.Key+"."
		}
		for _, g := range a.Value.Group() {
			fs = flatten(fs, p, t, g)
		}
		return fs
	}
	return append(fs, field{name: safeField(prefix + fieldName(a.Key)), text: text + a.Key, value: a.Value.String()})
}

// fieldName maps a slog key to journald's alphabet: A-Z, 0-9 and "_".
func fieldName(key string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return unicode.ToUpper(r)
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, key)
}

// safeField keeps a field from journald's own (MESSAGE, PRIORITY, ...) and
// from the forms it rejects (leading "_" or digit).
func safeField(name string) string {
	switch name {
	case "MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "ERRNO":
		return "LBD_" + name
	}
	if name == "" || name[0] == '_' || (name[0] >= '0' && name[0] <= '9') {
		return "LBD_" + strings.TrimLeft(name, "_")
	}
	return name
}

func quote(v string) string {
	if v == "" || strings.ContainsAny(v, " \"=\n\t") {
		return strconv.Quote(v)
	}
	return v
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}
