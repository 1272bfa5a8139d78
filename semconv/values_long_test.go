package semconv

import (
	"strings"
	"testing"
)

// TestParseLongValueIsNotQuoted: a value longer than any name is not quoted back whole (the
// scenario fuzzer's 4 KB style word made a 4 KB error line); a short one still is.
func TestParseLongValueIsNotQuoted(t *testing.T) {
	_, err := ParseStyle(strings.Repeat("j", 4070))
	if err == nil || len(err.Error()) > 100 || !strings.Contains(err.Error(), "4070 bytes") {
		t.Errorf("long style: %v", err)
	}
	_, err = ParseStyle("wiat")
	if err == nil || !strings.Contains(err.Error(), `"wiat"`) {
		t.Errorf("short style: %v", err)
	}
}
