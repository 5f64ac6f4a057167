package pagetoken_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
)

func TestRoundTrip(t *testing.T) {
	fp := pagetoken.Fingerprint("wave=1", "role=web")
	tests := []struct {
		name    string
		token   string
		fp      string
		want    string
		wantErr bool
	}{
		{name: "first page", token: "", fp: fp, want: ""},
		{name: "round trip", token: pagetoken.Encode("web-7", fp), fp: fp, want: "web-7"},
		{name: "other filters", token: pagetoken.Encode("web-7", fp), fp: pagetoken.Fingerprint("wave=2"), wantErr: true},
		{name: "not base64", token: "!!!", fp: fp, wantErr: true},
		{name: "not json", token: "bm90IGpzb24", fp: fp, wantErr: true},
		{name: "empty position", token: pagetoken.Encode("", fp), fp: fp, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pagetoken.Decode(tt.token, tt.fp)
			if tt.wantErr {
				if !errors.Is(err, pagetoken.ErrInvalid) {
					t.Fatalf("Decode(%q) error = %v, want ErrInvalid", tt.token, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Decode(%q) = %q, %v; want %q", tt.token, got, err, tt.want)
			}
		})
	}
}

func ExampleEncode() {
	fp := pagetoken.Fingerprint("role=db")
	tok := pagetoken.Encode("db-02", fp)
	after, err := pagetoken.Decode(tok, fp)
	fmt.Println(after, err)
	// Output: db-02 <nil>
}

func TestCollectReadsEveryPage(t *testing.T) {
	pages := map[string]struct {
		items []int
		next  string
	}{"": {[]int{1, 2}, "a"}, "a": {[]int{3}, "b"}, "b": {nil, ""}}
	var asked []string
	got, err := pagetoken.Collect(func(token string) ([]int, string, error) {
		asked = append(asked, token)
		p := pages[token]
		return p.items, p.next, nil
	})
	if err != nil || fmt.Sprint(got) != "[1 2 3]" || fmt.Sprint(asked) != "[ a b]" {
		t.Fatalf("Collect: %v %v, asked %q", got, err, asked)
	}
	boom := errors.New("boom")
	if got, err := pagetoken.Collect(func(token string) ([]int, string, error) {
		if token == "a" {
			return nil, "", boom
		}
		return []int{1}, "a", nil
	}); !errors.Is(err, boom) || got != nil {
		t.Fatalf("Collect with a failing page: %v %v", got, err)
	}
}
