package nodecmd

import (
	"encoding/json"
	"io"
	"strconv"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// isTerminalFd reports whether fd is a terminal.
func isTerminalFd(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// Clean makes a string that came from a node (a name, a fact, a run id, a
// report's message) safe to print on an operator's terminal: anything
// that is not a printable character — control characters such as ESC,
// C1 controls, line breaks, bidirectional overrides, invalid UTF-8 — is
// written as a Go escape inside quotes, so that no control sequence
// reaches the terminal and no line can pose as another.
func Clean(s string) string {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
		i += n
	}
	return s
}

// WriteJSON writes v as indented JSON, the --json output of every
// command: HTML characters are not escaped, since a person or jq reads it,
// not a browser.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
