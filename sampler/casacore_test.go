package sampler

import (
	"reflect"
	"testing"
)

func TestParseRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want []Request
	}{
		{"one", []byte{0, 0, 0, 1, 0, 0, 0x6c, 0xc3, 0, 0, 0, 0}, []Request{{PID: 27843}}},
		{"two", []byte{0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 2}, []Request{{7, 1}, {256, 2}}},
		{"empty list", []byte{0, 0, 0, 0, 0, 0, 0, 0}, nil},
		{"too many", []byte{0, 0, 0, 33}, nil},
		{"cut short", []byte{0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1}, nil},
		{"not a pid", []byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, nil},
		{"nothing", nil, nil},
	} {
		if got := parseRequests(tc.b); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
