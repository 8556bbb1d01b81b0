package journal

import "encoding/binary"

// Key layout. One byte of prefix separates the keyspaces so each is a
// contiguous range: a scan of the log never meets a cursor.
//
//	'L' + 8-byte big-endian sequence -> record (version | CBOR envelope | CRC)
//	'C' + cursor name                -> version | 8-byte seq | value | CRC
//	                                    (seq: the last record committed with it)
//	'M' + metadata name              -> metadata value (version | bytes | CRC)
//	'K' + 8-byte big-endian sequence -> checkpoint at that record (framed):
//	                                    its head, or (written before
//	                                    2026-12-04) the whole checkpoint
//	'D' + 8-byte sequence + 8-byte generation + 4-byte index
//	                                 -> one piece of the data of the
//	                                    checkpoint at that record (framed)
//
// Big-endian sequences sort numerically, so Pebble's key order is log order
// and the last key of the 'L' range is the last record.
const (
	prefixLog    byte = 'L'
	prefixCursor byte = 'C'
	prefixMeta   byte = 'M'
	prefixCkpt   byte = 'K'
	prefixPiece  byte = 'D'
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

// pieceKey is the key of piece i of the data that the checkpoint at seq
// was written with under generation gen (see checkpointHead).
func pieceKey(seq, gen uint64, i uint32) []byte {
	k := make([]byte, 0, 1+8+8+4)
	k = append(k, prefixPiece)
	k = binary.BigEndian.AppendUint64(k, seq)
	k = binary.BigEndian.AppendUint64(k, gen)
	return binary.BigEndian.AppendUint32(k, i)
}

// piecesKey sorts after every piece of the checkpoints below seq and
// before every piece of those at seq and above: pieces of the checkpoints
// in [a, b) are the keys in [piecesKey(a), piecesKey(b)).
func piecesKey(seq uint64) []byte {
	k := make([]byte, 1+8)
	k[0] = prefixPiece
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// pieceIndex returns the index of a piece key, or false for a key that is
// not one.
func pieceIndex(k []byte) (uint32, bool) {
	if len(k) != 1+8+8+4 || k[0] != prefixPiece {
		return 0, false
	}
	return binary.BigEndian.Uint32(k[17:]), true
}

var (
	piecesStart = []byte{prefixPiece}
	piecesEnd   = []byte{prefixPiece + 1}
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
