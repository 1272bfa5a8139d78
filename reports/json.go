package reports

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/lockprobe/lockprobe/analysis"
)

// JSON writes verdict.json: the view model, indented, keys in a fixed order. VERDICT_JSON.md
// documents every field.
func JSON(w io.Writer, res *analysis.Result, opts Options) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(NewView(res, opts)); err != nil {
		return fmt.Errorf("write verdict.json: %w", err)
	}
	return nil
}
