package tracefile

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// idKeys are the JSON keys whose values are ids: protojson writes bytes as base64, the OTLP JSON
// encoding wants hex. The rewrite works on the bytes, which is far cheaper than a generic decode.
var idKeys = [][]byte{[]byte(`"traceId"`), []byte(`"spanId"`), []byte(`"parentSpanId"`)}

func hexToBase64(v []byte) ([]byte, error) {
	raw, err := hex.DecodeString(string(v))
	if err != nil {
		return nil, err
	}
	return []byte(base64.StdEncoding.EncodeToString(raw)), nil
}

// rewriteIDs replaces the string value of every id key by conv(value).
func rewriteIDs(b []byte, conv func([]byte) ([]byte, error)) ([]byte, error) {
	var out []byte
	last := 0
	for i := 0; i < len(b); {
		j, key := nextKey(b, i)
		if j < 0 {
			break
		}
		k := j + len(key)
		for k < len(b) && isSpace(b[k]) {
			k++
		}
		// Skip past the whole key: resuming at j+1 would find the same key again, forever.
		if k >= len(b) || b[k] != ':' {
			i = j + len(key)
			continue
		}
		k++
		for k < len(b) && isSpace(b[k]) {
			k++
		}
		if k >= len(b) || b[k] != '"' {
			i = j + len(key)
			continue
		}
		end := bytes.IndexByte(b[k+1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("parse spans: unterminated id at byte %d", k)
		}
		val := b[k+1 : k+1+end]
		conv, err := conv(val)
		if err != nil {
			return nil, fmt.Errorf("parse spans: id %q at byte %d: %w", val, k, err)
		}
		out = append(out, b[last:k+1]...)
		out = append(out, conv...)
		last = k + 1 + end
		i = last
	}
	if out == nil {
		return b, nil
	}
	return append(out, b[last:]...), nil
}

// isSpace reports JSON whitespace; an id missed here would be read as base64, silently wrong.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// nextKey finds the earliest id key starting at or after lo, by its common ending.
func nextKey(b []byte, lo int) (int, []byte) {
	for i := lo; ; {
		j := bytes.Index(b[i:], idSuffix)
		if j < 0 {
			return -1, nil
		}
		end := i + j + len(idSuffix)
		for _, key := range idKeys {
			if start := end - len(key); start >= lo && bytes.Equal(b[start:end], key) {
				return start, key
			}
		}
		i = end
	}
}

var idSuffix = []byte(`Id"`)
