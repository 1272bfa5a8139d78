package lptest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Verdict is what end-to-end tests read of a run's OUT/verdict.json (reports/VERDICT_JSON.md):
// the fields they check, named as the file names them.
type Verdict struct {
	Verdict struct {
		Class   string `json:"class"`
		Exit    int    `json:"exit"`
		Summary string `json:"summary"`
	} `json:"verdict"`
	Run struct {
		EndReason    string   `json:"end_reason"`
		MessagesLost int      `json:"messages_lost"`
		Killed       []string `json:"killed"`
		Unresponsive []string `json:"unresponsive"`
		Launcher     string   `json:"launcher"`
		Delivery     string   `json:"delivery"`
		Nodes        []string `json:"nodes"`
	} `json:"run"`
	Findings []struct {
		Class    string `json:"class"`
		Summary  string `json:"summary"`
		Evidence []struct {
			Source string `json:"source"`
			By     string `json:"by"`
			Text   string `json:"text"`
		} `json:"evidence"`
	} `json:"findings"`
	Lockers []struct {
		ID   int64  `json:"id"`
		Node string `json:"node"`
		PID  int64  `json:"pid"`
	} `json:"lockers"`
	Hosts []struct {
		Node               string `json:"node"`
		ClockUncertaintyNS int64  `json:"clock_uncertainty_ns"`
		Silences           []struct {
			FromNS int64 `json:"from_ns"`
			ToNS   int64 `json:"to_ns"`
			Healed bool  `json:"healed"`
		} `json:"silences"`
	} `json:"hosts"`
}

// ReadVerdict reads out's verdict.json; nil and the error when there is none or it is not JSON.
func ReadVerdict(out string) (*Verdict, error) {
	b, err := os.ReadFile(filepath.Join(out, "verdict.json"))
	if err != nil {
		return nil, err
	}
	var v Verdict
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("verdict.json: %w", err)
	}
	return &v, nil
}
