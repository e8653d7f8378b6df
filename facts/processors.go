package facts

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// collectProcessors reads /proc/cpuinfo: the count of logical CPUs, the
// model of the first one, and the count of physical packages where the
// architecture reports them.
func collectProcessors(_ context.Context, h *host) (Facts, error) {
	b, err := h.readFile("/proc/cpuinfo")
	if err != nil {
		return nil, err
	}
	ci := parseCPUInfo(b)
	if ci.count == 0 {
		return nil, errors.New("reading /proc/cpuinfo: no processor entries")
	}
	p := map[string]any{"count": int64(ci.count), "model": ci.model}
	if ci.physical > 0 {
		p["physical"] = int64(ci.physical)
	}
	return Facts{"processors": p}, nil
}

type cpuInfo struct {
	count, physical int
	model           string
	hypervisor      bool // the "hypervisor" CPU flag (x86): running under one
}

// modelKeys name the processor model across architectures, best first:
// x86 "model name", 32-bit ARM "Processor", MIPS "cpu model", POWER "cpu".
var modelKeys = []string{"model name", "Processor", "cpu model", "cpu"}

// parseCPUInfo parses /proc/cpuinfo's "key : value" blocks, one per
// logical CPU, each starting with a "processor" line.
func parseCPUInfo(b []byte) cpuInfo {
	var ci cpuInfo
	models := map[string]string{}
	packages := map[string]bool{}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "processor":
			// 32-bit ARM also has "Processor : ARMv7 …", a model, not an
			// index; the key differs only in case, so compare exactly.
			ci.count++
		case "physical id":
			packages[v] = true
		case "flags":
			if !ci.hypervisor {
				for f := range strings.FieldsSeq(v) {
					if f == "hypervisor" {
						ci.hypervisor = true
						break
					}
				}
			}
		}
		if _, seen := models[k]; !seen && v != "" && slices.Contains(modelKeys, k) {
			models[k] = v
		}
	}
	for _, k := range modelKeys {
		if m, ok := models[k]; ok {
			ci.model = m
			break
		}
	}
	ci.physical = len(packages)
	return ci
}
