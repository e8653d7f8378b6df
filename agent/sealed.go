package agent

import (
	"cmp"
	"context"
	"crypto/ecdh"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
)

// minScrub is the shortest plain value scrubbed out of free text (errors,
// causes, log lines): shorter ones ("on", "1") would mangle every message
// they happen to occur in and are no secret worth the name. Changes of a
// sensitive attribute show nothing, whatever the value's length.
const minScrub = 4

// secrets is what the engine knows of one sensitive resource while it
// runs: the attributes whose values must never show, and the plain values
// opened from its sealed attributes, to scrub out of any text its type
// produces. It lives in memory for the resource's turn only.
type secrets struct {
	typ    string
	attrs  map[string]bool
	plains []string // longest first, so that a longer value is replaced whole
}

// openSealed returns r as its type must see it, its sealed attributes
// opened with key, and the secrets to redact its event with. A resource
// with nothing sensitive comes back as it is, with nil secrets and no
// allocation: a run of 20,000 plain files pays a map walk each. The
// catalog itself is never changed: the cache, the state and the spool
// keep the sealed form, and the plain values live only in the copy.
func openSealed(r *catalogs.Resource, key *ecdh.PrivateKey) (*catalogs.Resource, *secrets, error) {
	sensitive := false
	for k, v := range r.Attrs {
		if catalogs.IsSensitive(v) || catalogs.SensitiveAttr(r.Type, k) {
			sensitive = true
			break
		}
	}
	if !sensitive {
		return r, nil, nil
	}
	sc := &secrets{typ: r.Type, attrs: map[string]bool{}}
	opened := *r
	opened.Attrs = make(map[string]any, len(r.Attrs))
	var failed []string
	for k, v := range r.Attrs {
		s, sealed := v.(catalogs.Sealed)
		if !sealed {
			opened.Attrs[k] = v
			if catalogs.SensitiveAttr(r.Type, k) {
				sc.attrs[k] = true
				sc.add(v)
			}
			continue
		}
		sc.attrs[k] = true
		if key == nil {
			failed = append(failed, k)
			continue
		}
		pv, err := s.Open(key)
		if err != nil {
			failed = append(failed, k)
			continue
		}
		opened.Attrs[k] = pv
		sc.add(pv)
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		why := "sealed to another key"
		if key == nil {
			why = "this agent has no node key"
		}
		return nil, sc, fmt.Errorf("opening sealed %s %s: %s: re-enroll or wait for the server to re-seal",
			plural(len(failed), "attribute", "attributes"), strings.Join(failed, ", "), why)
	}
	slices.SortFunc(sc.plains, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	sc.plains = slices.Compact(sc.plains)
	return &opened, sc, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// add keeps the plain strings of a value (a string, a list's elements, a
// table's values, and each line of a multi-line one) for scrubbing.
func (sc *secrets) add(v any) {
	switch v := v.(type) {
	case string:
		sc.addString(v)
	case []string:
		for _, s := range v {
			sc.addString(s)
		}
	case map[string]string:
		for _, s := range v {
			sc.addString(s)
		}
	}
}

func (sc *secrets) addString(s string) {
	if len(s) < minScrub {
		return
	}
	sc.plains = append(sc.plains, s)
	if strings.Contains(s, "\n") {
		for line := range strings.Lines(s) {
			if line = strings.TrimSpace(line); len(line) >= minScrub {
				sc.plains = append(sc.plains, line)
			}
		}
	}
}

// scrub replaces every plain value in text by catalogs.SensitiveText.
// A value that overlaps the replacement's edge ("e)ab" in "…e)abab")
// could form again around it; the passes repeat until none is left (a
// value inside SensitiveText itself, "sens", is no secret it could hide).
func (sc *secrets) scrub(text string) string {
	if text == "" {
		return text
	}
	for range 8 {
		again := false
		for _, p := range sc.plains {
			if !strings.Contains(text, p) {
				continue
			}
			text = strings.ReplaceAll(text, p, catalogs.SensitiveText)
			again = again || !strings.Contains(catalogs.SensitiveText, p)
		}
		if !again {
			break
		}
	}
	return text
}

// contains reports whether text holds a plain value.
func (sc *secrets) contains(text string) bool {
	for _, p := range sc.plains {
		if strings.Contains(text, p) {
			return true
		}
	}
	return false
}

// markChanges makes sensitive every change of a sensitive resource that
// could carry a value: one of a sensitive attribute, one whose name is no
// attribute of the type (a systemd unit's diff, a spec digest: derived
// from every attribute, secrets included), and one whose text holds a
// plain value. The flag comes from the catalog, never only from the type:
// a type that forgets it still shows nothing. A sensitive change keeps
// its attribute and action, so that the event says what changed; its
// values are cleared.
func (sc *secrets) markChanges(cs []resources.Change) {
	for i := range cs {
		c := &cs[i]
		if !c.Sensitive && (sc.attrs[c.Attr] || !schemaHas(sc.typ, c.Attr) ||
			sc.contains(c.From) || sc.contains(c.To) || sc.contains(c.Diff)) {
			c.Sensitive = true
		}
		if c.Sensitive {
			c.From, c.To, c.Diff = "", "", ""
		}
	}
}

// redactEvent is the last word on a sensitive resource's event, whatever
// path made it (check, apply, refresh, a recovered panic): its changes
// are marked, its output (an exec's or a health check's, which may echo
// a sealed stdin or environment) is not kept, and its error and cause are
// scrubbed.
func (sc *secrets) redactEvent(ev *Event) {
	sc.markChanges(ev.Changes)
	if ev.Output != "" {
		ev.Output = catalogs.SensitiveText + ": the output of a sensitive resource is not kept"
	}
	ev.Error = sc.scrub(ev.Error)
	ev.Cause = sc.scrub(ev.Cause)
}

// redactHealth scrubs the plain values of a sensitive service out of its
// health detail (a check's error, the supervisor's account with the tail
// of the service's log), which could echo its sealed environment.
func redactHealth(hs []ServiceHealth, cat *catalogs.Catalog, key *ecdh.PrivateKey) {
	for i := range hs {
		r, ok := cat.Resource("service:" + hs[i].Name)
		if !ok || hs[i].Detail == "" {
			continue
		}
		if _, sc, _ := openSealed(r, key); sc != nil {
			hs[i].Detail = sc.scrub(hs[i].Detail)
		}
	}
}

// schemaHas reports whether attr is an attribute of the resource type.
func schemaHas(typ, attr string) bool {
	s, ok := catalogs.Schemas[typ]
	if !ok {
		return false
	}
	_, ok = s.Attr(attr)
	return ok
}

// logger is the logger a sensitive resource's type gets: the run's,
// through a handler that scrubs plain values from every record (the debug
// level too) and hides command output outright.
func (sc *secrets) logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return nil
	}
	return slog.New(&redactHandler{inner: l.Handler(), sc: sc})
}

// redactHandler is the slog.Handler behind secrets.logger.
type redactHandler struct {
	inner slog.Handler
	sc    *secrets
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, h.sc.scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(h.sc.attr(a))
		return true
	})
	return h.inner.Handle(ctx, nr)
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = h.sc.attr(a)
	}
	return &redactHandler{inner: h.inner.WithAttrs(out), sc: h.sc}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{inner: h.inner.WithGroup(name), sc: h.sc}
}

// attr redacts one log attribute: output is hidden, every other text
// value scrubbed; numbers, times and booleans pass.
func (sc *secrets) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, e := range g {
			out[i] = sc.attr(e)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
		return slog.Attr{Key: a.Key, Value: v}
	}
	if a.Key == "output" || a.Key == "stdin" || a.Key == "env" {
		return slog.String(a.Key, catalogs.SensitiveText)
	}
	return slog.String(a.Key, sc.scrub(v.String()))
}
