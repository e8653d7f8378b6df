package supervise

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// A real line, from a process named "a) b (c" to test the parsing of comm.
const statLine = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 1176 0 0 0 3 1 0 0 20 0 1 0 987654 12345678 987 " +
	"18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr bool
	}{
		{"comm with spaces and parens", statLine, procStat{PID: 4242, Comm: "a) b (c", State: 'S', PPID: 1, PGRP: 4242, Session: 4242, StartTicks: 987654}, false},
		{"zombie", "7 (sh) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0", procStat{PID: 7, Comm: "sh", State: 'Z', PPID: 1, PGRP: 7, Session: 7, StartTicks: 55}, false},
		{"empty comm", "9 () R 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0", procStat{PID: 9, State: 'R', PPID: 1, PGRP: 2, Session: 3, StartTicks: 1}, false},
		{"empty", "", procStat{}, true},
		{"no comm", "12 S 1 2 3", procStat{}, true},
		{"too few fields", "12 (x) S 1 2 3", procStat{}, true},
		{"bad pid", "x (y) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0", procStat{}, true},
		{"bad start time", "9 (x) R 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5 0 0", procStat{}, true},
		{"bad state", "9 (x) RR 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseStat(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestReadStatSelf(t *testing.T) {
	t.Parallel()
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.PPID != os.Getppid() || st.PGRP != syscall.Getpgrp() || st.StartTicks == 0 || !st.live() {
		t.Errorf("readStat(self) = %+v; want pid %d, ppid %d, pgrp %d, a start time", st, os.Getpid(), os.Getppid(), syscall.Getpgrp())
	}
	if _, err := readBootID(); err != nil {
		t.Error(err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statLine))
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0"))
	f.Add([]byte("1 ()) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0"))
	f.Add([]byte(")("))
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStat(b)
		if err != nil {
			return
		}
		if st.PID <= 0 || st.State == 0 {
			t.Errorf("parseStat(%q) = %+v without error", b, st)
		}
	})
}

// FuzzParseStatComm checks that any command name, however odd, leaves the
// fields after it intact.
func FuzzParseStatComm(f *testing.F) {
	f.Add("sleep", uint64(12345))
	f.Add("a) b (c", uint64(1))
	f.Add(") R 1 2 3", uint64(99))
	f.Add("x\ny", uint64(1<<63))
	f.Fuzz(func(t *testing.T, comm string, ticks uint64) {
		if strings.ContainsRune(comm, 0) {
			return // the kernel keeps comm as a C string
		}
		line := fmt.Sprintf("321 (%s) S 1 321 320 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0 0\n", comm, ticks)
		st, err := parseStat([]byte(line))
		if err != nil {
			t.Fatalf("parseStat(%q): %v", line, err)
		}
		want := procStat{PID: 321, Comm: comm, State: 'S', PPID: 1, PGRP: 321, Session: 320, StartTicks: ticks}
		if st != want {
			t.Errorf("parseStat(%q) = %+v, want %+v", line, st, want)
		}
	})
}

func TestLookPath(t *testing.T) {
	t.Parallel()
	if got, err := lookPath("sh", nil); err != nil || !strings.HasSuffix(got, "/sh") {
		t.Errorf(`lookPath("sh", nil) = %q, %v; want a path to sh`, got, err)
	}
	if got, err := lookPath("sh", []string{"PATH=relative:/nonexistent"}); err == nil {
		t.Errorf("lookPath in a PATH without sh = %q, want an error", got)
	}
	if got, err := lookPath("./x", nil); got != "./x" || err != nil {
		t.Errorf(`lookPath("./x") = %q, %v; want it unchanged`, got, err)
	}
}
