package journal

import "encoding/binary"

// Key layout. One byte of prefix separates the keyspaces so each is a
// contiguous range: a scan of the log never meets a cursor.
//
//	'L' + 8-byte big-endian sequence -> record (version | CBOR envelope | CRC)
//	'C' + cursor name                -> version | 8-byte seq | value | CRC
//	                                    (seq: the last record committed with it)
//	'M' + metadata name              -> metadata value (version | bytes | CRC)
//	'K' + 8-byte big-endian sequence -> checkpoint at that record (framed)
//
// Big-endian sequences sort numerically, so Pebble's key order is log order
// and the last key of the 'L' range is the last record.
const (
	prefixLog    byte = 'L'
	prefixCursor byte = 'C'
	prefixMeta   byte = 'M'
	prefixCkpt   byte = 'K'
)

const logKeyLen = 1 + 8

func logKey(seq uint64) []byte {
	k := make([]byte, logKeyLen)
	k[0] = prefixLog
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// seqOfKey returns the sequence of a log key, or false for a key that is not
// one (wrong prefix or length).
func seqOfKey(k []byte) (uint64, bool) {
	if len(k) != logKeyLen || k[0] != prefixLog {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

// logStart and logEnd bound the whole log keyspace.
var (
	logStart = []byte{prefixLog}
	logEnd   = []byte{prefixLog + 1}
)

func checkpointKey(seq uint64) []byte {
	k := make([]byte, logKeyLen)
	k[0] = prefixCkpt
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func seqOfCheckpointKey(k []byte) (uint64, bool) {
	if len(k) != logKeyLen || k[0] != prefixCkpt {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

var (
	checkpointStart = []byte{prefixCkpt}
	checkpointEnd   = []byte{prefixCkpt + 1}
)

func cursorKey(name string) []byte { return append([]byte{prefixCursor}, name...) }

func metaKey(name string) []byte { return append([]byte{prefixMeta}, name...) }

// Metadata names.
const (
	// metaID holds the journal's random ID, generated on first Open. It
	// tells one journal's records from another's wherever they meet, e.g.
	// in Nats-Msg-Id headers.
	metaID = "id"
	// metaStart holds where a pruned log starts (see anchor); absent
	// until the first Prune.
	metaStart = "start"
)
