package nodecmd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"

	"github.com/herdcm/herd/agent"
)

// ServerList is the agent's server addresses, tried in order (the agent
// moves to the next when one fails). In agent.toml `server` is one
// address as a string ("a:8140") or a list (["a:8140", "b:8140"]); on the
// command line --server is repeatable and each value may be a
// comma-separated list.
type ServerList []string

// String is the list as the agent's options take it: comma-separated.
func (l ServerList) String() string { return strings.Join(l, ",") }

// UnmarshalTOML reads agent.toml's server, a string or a list of strings,
// and checks every address (agent.ParseServers). ApplyConfigFile enables
// it on its decoder.
func (l *ServerList) UnmarshalTOML(raw []byte) error {
	var v struct {
		V any `toml:"v"`
	}
	if err := toml.Unmarshal(append([]byte("v = "), raw...), &v); err != nil {
		// A table, most likely (raw is its body then).
		return errors.New(`server: want "host:port" or a list of them`)
	}
	var s string
	switch x := v.V.(type) {
	case string:
		s = x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			p, ok := e.(string)
			if !ok {
				return fmt.Errorf("server: entry %d is a %T; want \"host:port\"", i+1, e)
			}
			if strings.Contains(p, ",") {
				return fmt.Errorf("server: entry %d %q: one address per entry", i+1, p)
			}
			parts[i] = p
		}
		s = strings.Join(parts, ",")
		if len(x) == 0 {
			s = ""
		}
	default:
		return fmt.Errorf("server: a %T; want \"host:port\" or a list of them", v.V)
	}
	list, err := agent.ParseServers(s)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	*l = list
	return nil
}

// MarshalTOML writes what UnmarshalTOML reads: one address as a string,
// several as a list. Addresses that ParseServers accepted need no
// escaping.
func (l ServerList) MarshalTOML() ([]byte, error) {
	if len(l) == 1 {
		return []byte(`"` + l[0] + `"`), nil
	}
	return []byte(`["` + strings.Join(l, `", "`) + `"]`), nil
}

// serverFlag is --server: repeatable, each value a comma-separated list.
// The first value given replaces the default; later ones add to it.
type serverFlag struct {
	list    *ServerList
	changed bool
}

// ServerFlag binds --server to list.
func ServerFlag(f *pflag.FlagSet, list *ServerList, usage string) {
	f.Var(&serverFlag{list: list}, "server", usage)
}

func (f *serverFlag) String() string {
	if f.list == nil {
		return ""
	}
	return f.list.String()
}

func (f *serverFlag) Type() string { return "addresses" }

func (f *serverFlag) Set(s string) error {
	add, err := agent.ParseServers(s)
	if err != nil {
		return err
	}
	next := ServerList(add)
	if f.changed {
		next = append(append(ServerList{}, *f.list...), add...)
		if _, err := agent.ParseServers(next.String()); err != nil {
			return err
		}
	}
	*f.list, f.changed = next, true
	return nil
}
