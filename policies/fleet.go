package policies

import (
	"github.com/herdcm/herd/catalogs"
)

// Unmanaged stands for a package's version on the side of a change where
// the catalog does not manage it: "unmanaged -> 1.26" is a package a
// rollout adds, "1.24 -> unmanaged" one it stops managing.
const Unmanaged = "unmanaged"

// Summarize builds a rollout's fleet summary from each node's change
// (node name → change against its approved catalog): how many nodes
// change, how many add, remove or change each resource, and how many move
// each package from one version to another. A package's version is its
// "version" attribute, else its "ensure" ("installed" when unset). nodes
// is how many nodes the rollout covers, changing or not.
func Summarize(version, previous string, nodes int, changes map[string]catalogs.Change) *Fleet {
	f := &Fleet{
		Version:         version,
		PreviousVersion: previous,
		Nodes:           nodes,
		Resources:       map[string]ResourceCount{},
		Packages:        map[string]PackageCount{},
	}
	for _, c := range changes {
		if len(c.Added)+len(c.Removed)+len(c.Changed) == 0 {
			continue
		}
		f.Changing++
		// A node counts once per package, whatever its change lists say.
		moved := map[string]string{}
		for _, rc := range c.Added {
			n := f.Resources[rc.ID]
			n.Added++
			f.Resources[rc.ID] = n
			if rc.Type == "package" {
				moved[rc.Name] = Unmanaged + " -> " + packageVersion(rc.Attrs, false)
			}
		}
		for _, rc := range c.Removed {
			n := f.Resources[rc.ID]
			n.Removed++
			f.Resources[rc.ID] = n
			if rc.Type == "package" {
				moved[rc.Name] = packageVersion(rc.Attrs, true) + " -> " + Unmanaged
			}
		}
		for _, rc := range c.Changed {
			n := f.Resources[rc.ID]
			n.Changed++
			f.Resources[rc.ID] = n
			if rc.Type != "package" {
				continue
			}
			if from, to, ok := versionChange(rc.Attrs); ok {
				moved[rc.Name] = from + " -> " + to
			}
		}
		for name, move := range moved {
			pc := f.Packages[name]
			if pc.Versions == nil {
				pc.Versions = map[string]int{}
			}
			pc.Nodes++
			pc.Versions[move]++
			f.Packages[name] = pc
		}
	}
	return f
}

// packageVersion is the version an added (to) or removed (from) package
// resource's attributes give.
func packageVersion(attrs []catalogs.AttrChange, from bool) string {
	v := map[string]any{}
	for _, a := range attrs {
		if from {
			v[a.Name] = a.From
		} else {
			v[a.Name] = a.To
		}
	}
	for _, k := range []string{"version", "ensure"} {
		if s, ok := v[k].(string); ok && s != "" {
			return s
		}
	}
	return "installed"
}

// versionChange reads a changed package's version change: its "version"
// attribute's if that changed, else its "ensure"'s.
func versionChange(attrs []catalogs.AttrChange) (from, to string, ok bool) {
	for _, k := range []string{"version", "ensure"} {
		for _, a := range attrs {
			if a.Name != k {
				continue
			}
			return versionString(a.From), versionString(a.To), true
		}
	}
	return "", "", false
}

func versionString(v any) string {
	if s, ok := v.(string); ok && s != "" {
		return s
	}
	// An unset ensure is the default, installed.
	return "installed"
}
