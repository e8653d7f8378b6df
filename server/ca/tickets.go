package ca

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ticketKeysFile keeps the TLS session ticket keys beside the CA key: a
// ticket key lets its holder resume a session as any certificate the
// server ever saw, so it is as secret as the CA key and lives with it.
const ticketKeysFile = "ticket.keys"

// TicketKeyLife is how long a session ticket key encrypts new tickets;
// keys are kept for decrypting for twice as long again, so a ticket lives
// at most about three periods.
const TicketKeyLife = 24 * time.Hour

// ticketRecord is one key in ticketKeysFile: 8 bytes of creation time
// (Unix seconds, big-endian) and the 32-byte key.
const ticketRecord = 8 + 32

// TicketKeys returns the TLS session ticket keys, newest first, as
// tls.Config.SetSessionTicketKeys takes them: the first encrypts new
// tickets, all decrypt. It keeps them in ticket.keys (0600) in the CA's
// directory, adds a new key when the newest is older than TicketKeyLife
// and drops keys older than three times that, so that a stolen key stops
// opening sessions within days. The server calls it at start and hourly.
func (c *CA) TicketKeys() ([][32]byte, error) {
	c.ticketMu.Lock()
	defer c.ticketMu.Unlock()
	path := filepath.Join(c.dir, ticketKeysFile)
	now := c.now()
	type rec struct {
		created time.Time
		key     [32]byte
	}
	var recs []rec
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading session ticket keys: %w", err)
	case len(data)%ticketRecord != 0:
		// A torn or foreign file: start afresh rather than trust part of
		// it. Sessions resume again after one full handshake.
		c.log.Warn("session ticket keys file is malformed; making new keys", "path", path, "bytes", len(data))
	default:
		for b := data; len(b) > 0; b = b[ticketRecord:] {
			r := rec{created: time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)}
			copy(r.key[:], b[8:ticketRecord])
			recs = append(recs, r)
		}
	}
	changed := false
	kept := recs[:0]
	for _, r := range recs {
		if now.Sub(r.created) < 3*TicketKeyLife && !r.created.After(now.Add(TicketKeyLife)) {
			kept = append(kept, r)
		} else {
			changed = true
		}
	}
	recs = kept
	if len(recs) == 0 || now.Sub(recs[0].created) >= TicketKeyLife {
		r := rec{created: now}
		copy(r.key[:], randomBytes(32))
		recs = append([]rec{r}, recs...)
		changed = true
	}
	if changed {
		out := make([]byte, 0, len(recs)*ticketRecord)
		for _, r := range recs {
			out = binary.BigEndian.AppendUint64(out, uint64(r.created.Unix()))
			out = append(out, r.key[:]...)
		}
		if err := writeReplace(path, out, 0o600); err != nil {
			return nil, fmt.Errorf("writing session ticket keys: %w", err)
		}
		c.log.Info("rotated session ticket keys", "keys", len(recs))
	}
	keys := make([][32]byte, len(recs))
	for i, r := range recs {
		keys[i] = r.key
	}
	return keys, nil
}
