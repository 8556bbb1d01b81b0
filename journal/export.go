package journal

import (
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// ReadExportFile reads a `rollbook journal export` file (JSON lines,
// gzipped when the name ends in .gz) and passes fn each record, decoded
// from the line's "raw" field: the stored record, checksum and all. It
// does not check how records link; the caller that needs a chain checks
// it, as it would for any other copy.
func ReadExportFile(path string, fn func(Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		var l struct {
			Raw string `json:"raw"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		raw, err := base64.StdEncoding.DecodeString(l.Raw)
		if err != nil || l.Raw == "" {
			return fmt.Errorf("%s:%d: no raw record (export with a current rollbook)", path, line)
		}
		rec, err := DecodeRecord(raw)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return sc.Err()
}
