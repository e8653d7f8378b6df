package nodecmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"
)

// ApplyConfigFile fills cfg (a pointer to a struct whose fields have toml
// tags and are bound to flags of the same name, "_" spelled "-") from the
// TOML file at path, for every setting whose flag was not given: flags
// win. The file is decoded strictly: an unknown key is an error naming its
// line, not a setting silently ignored.
func ApplyConfigFile(cmd *cobra.Command, path string, cfg any) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	fromFile := reflect.New(reflect.TypeOf(cfg).Elem())
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	// Settings that take more than one shape (ServerList) decode
	// themselves.
	dec.EnableUnmarshalerInterface()
	if err := dec.Decode(fromFile.Interface()); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return fmt.Errorf("%s: %s", path, strings.TrimSpace(sm.String()))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("%s:%d:%d: %v", path, row, col, de)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	dst, src := reflect.ValueOf(cfg).Elem(), fromFile.Elem()
	t := dst.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		flag := strings.ReplaceAll(tag, "_", "-")
		if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
			continue
		}
		if !src.Field(i).IsZero() {
			dst.Field(i).Set(src.Field(i))
		}
	}
	return nil
}

// Duration is a time.Duration that reads "30s" from TOML and from a flag.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error { return d.Set(string(b)) }

func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration like \"30s\" or \"5m\": %w", err)
	}
	*d = Duration(v)
	return nil
}

func (d *Duration) String() string { return time.Duration(*d).String() }

func (d *Duration) Type() string { return "duration" }
