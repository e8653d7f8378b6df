package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A report's events are kept in its own row, in reports.event_data, as
// one value in this encoding, rather than as a row each in the events
// table: a report of 100 changed resources was 100 rows and 1,200 bound
// values, which made it a writer's slowest statement by far. The events
// are only ever read with their report, so nothing is lost by it. Reports
// stored before migration 14 keep their rows in events and are read from
// there.
//
// The encoding is a version byte (eventDataVersion), the number of events
// as a uvarint, then each event: its ID, Type, Status, ChangesJSON,
// Refresh, Error, Cause, Output and Source, each a uvarint length and
// the bytes (ChangesJSON's length is one more than its bytes, 0 for nil,
// so that nil and empty stay apart as they did in a column); a flags byte
// (1: Noop); and Duration as a varint.
const eventDataVersion = 1

const eventNoop = 1 << 0

// encodeEvents encodes events for reports.event_data; nil for none.
func encodeEvents(events []Event) []byte {
	if len(events) == 0 {
		return nil
	}
	n := 1 + binary.MaxVarintLen64
	for i := range events {
		e := &events[i]
		n += 9*binary.MaxVarintLen64 + 1 + binary.MaxVarintLen64 +
			len(e.ID) + len(e.Type) + len(e.Status) + len(e.ChangesJSON) + len(e.Refresh) +
			len(e.Error) + len(e.Cause) + len(e.Output) + len(e.Source)
	}
	b := make([]byte, 0, n)
	b = append(b, eventDataVersion)
	b = binary.AppendUvarint(b, uint64(len(events)))
	for i := range events {
		e := &events[i]
		b = appendString(b, e.ID)
		b = appendString(b, e.Type)
		b = appendString(b, e.Status)
		if e.ChangesJSON == nil {
			b = binary.AppendUvarint(b, 0)
		} else {
			b = binary.AppendUvarint(b, uint64(len(e.ChangesJSON))+1)
			b = append(b, e.ChangesJSON...)
		}
		b = appendString(b, e.Refresh)
		b = appendString(b, e.Error)
		b = appendString(b, e.Cause)
		b = appendString(b, e.Output)
		b = appendString(b, e.Source)
		var flags byte
		if e.Noop {
			flags |= eventNoop
		}
		b = append(b, flags)
		b = binary.AppendVarint(b, int64(e.Duration))
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// errEventData is what decodeEvents says of bytes it cannot read.
var errEventData = errors.New("the stored events do not read")

// decodeEvents decodes reports.event_data. The bytes come from this
// store, but a damaged database must give an error, never a panic or an
// allocation its length does not justify.
func decodeEvents(b []byte) ([]Event, error) {
	d := eventDecoder{b: b}
	if len(b) == 0 {
		return nil, nil
	}
	if v := d.byte(); v != eventDataVersion {
		return nil, fmt.Errorf("%w: version %d, this herd reads %d", errEventData, v, eventDataVersion)
	}
	n := d.uvarint()
	// Every event takes at least 11 bytes: nine lengths, the flags and
	// the duration.
	if d.err != nil || n > 1<<eventBits || n > uint64(len(d.b))/11 {
		return nil, fmt.Errorf("%w: %d events in %d bytes", errEventData, n, len(b))
	}
	if n == 0 {
		return nil, d.end()
	}
	out := make([]Event, n)
	for i := range out {
		e := &out[i]
		e.ID, e.Type, e.Status = d.string(), d.string(), d.string()
		if l := d.uvarint(); l > 0 {
			e.ChangesJSON = d.bytes(l - 1)
		}
		e.Refresh, e.Error, e.Cause, e.Output, e.Source = d.string(), d.string(), d.string(), d.string(), d.string()
		e.Noop = d.byte()&eventNoop != 0
		e.Duration = time.Duration(d.varint())
		if d.err != nil {
			return nil, fmt.Errorf("%w: event %d of %d: %v", errEventData, i+1, n, d.err)
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return out, nil
}

// end is an error unless every byte was read.
func (d *eventDecoder) end() error {
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d bytes after the last event", errEventData, len(d.b))
	}
	return nil
}

// eventDecoder reads event_data; the first error sticks, and every read
// after it gives zero values.
type eventDecoder struct {
	b   []byte
	err error
}

func (d *eventDecoder) fail(what string) {
	if d.err == nil {
		d.err = errors.New(what)
	}
	d.b = nil
}

func (d *eventDecoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("cut short")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *eventDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("a bad length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *eventDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("a bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *eventDecoder) bytes(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail("a length past the end")
		return nil
	}
	out := make([]byte, n)
	copy(out, d.b)
	d.b = d.b[n:]
	return out
}

func (d *eventDecoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("a length past the end")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
