package catalogs

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// keyTypes are the public key types sshd accepts in authorized_keys.
var keyTypes = []string{
	"ssh-ed25519", "ssh-rsa", "ssh-dss",
	"ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
	"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
	"ssh-ed25519-cert-v01@openssh.com", "ssh-rsa-cert-v01@openssh.com",
	"ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp384-cert-v01@openssh.com",
	"ecdsa-sha2-nistp521-cert-v01@openssh.com",
	"sk-ssh-ed25519-cert-v01@openssh.com", "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
}

// KnownKeyType reports whether t is a public key type sshd accepts.
func KnownKeyType(t string) bool { return slices.Contains(keyTypes, t) }

// SplitPublicKey checks a public key written as "type base64" and returns
// its parts: the type must be one sshd accepts and the base64 must decode
// to a key of that very type (the SSH wire format starts with the type's
// name), so that a truncated or mistyped paste fails loudly.
func SplitPublicKey(key string) (typ, blob string, err error) {
	f := strings.Fields(key)
	switch {
	case len(f) == 0:
		return "", "", errors.New(`want "type base64", like "ssh-ed25519 AAAAC3Nza…"`)
	case len(f) > 2:
		return "", "", errors.New(`want "type base64" only: the line's comment is the resource's name`)
	case !KnownKeyType(f[0]):
		return "", "", fmt.Errorf("unknown key type %q (want one of %s)", f[0], strings.Join(keyTypes, ", "))
	case len(f) == 1:
		return "", "", errors.New(`want "type base64": the base64 key is missing`)
	}
	raw, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return "", "", fmt.Errorf("the key is not valid base64: %v", err)
	}
	if len(raw) < 4 {
		return "", "", errors.New("the key is too short to be a key")
	}
	n := int(raw[0])<<24 | int(raw[1])<<16 | int(raw[2])<<8 | int(raw[3])
	if n > len(raw)-4 || string(raw[4:4+n]) != f[0] {
		return "", "", fmt.Errorf("the base64 key is not a %s key", f[0])
	}
	return f[0], f[1], nil
}

// CheckKeyOption checks one authorized_keys option: a name, or
// name="value" with no unescaped quote or line break in the value.
func CheckKeyOption(o string) error {
	name, val, hasVal := strings.Cut(o, "=")
	if name == "" {
		return fmt.Errorf("option %q: want a name like no-pty or from=\"10.0.0.0/8\"", o)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '@' || c == '.') {
			return fmt.Errorf("option %q: want a name like no-pty or from=\"10.0.0.0/8\"", o)
		}
	}
	if !hasVal {
		return nil
	}
	inner, ok := strings.CutPrefix(val, `"`)
	if ok {
		inner, ok = strings.CutSuffix(inner, `"`)
	}
	if !ok || strings.ContainsAny(inner, "\n\r\x00") {
		return fmt.Errorf("option %q: a value is written in double quotes, on one line", o)
	}
	for i := 0; i < len(inner); i++ {
		if inner[i] == '\\' {
			i++
			continue
		}
		if inner[i] == '"' {
			return fmt.Errorf("option %q: a quote inside the value must be escaped as \\\"", o)
		}
	}
	if strings.HasSuffix(inner, `\`) && !strings.HasSuffix(inner, `\\`) {
		return fmt.Errorf("option %q: the value ends in a lone backslash", o)
	}
	return nil
}
