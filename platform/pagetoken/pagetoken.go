// Package pagetoken encodes the opaque page tokens of List RPCs. A token remembers
// where the previous page ended and a fingerprint of the request's filters, so that a
// token reused with other filters is refused instead of silently skipping results.
package pagetoken

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"

	"google.golang.org/protobuf/proto"
)

// ErrInvalid is returned by Decode for a token this package did not make, or one made
// for other filters.
var ErrInvalid = errors.New("pagetoken: invalid page token")

type token struct {
	After  string `json:"a"`
	Filter string `json:"f"`
}

// Fingerprint returns a short digest of the parts of a request that must stay the same
// from page to page.
func Fingerprint(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

// Encode returns the token for the page that starts after key after.
func Encode(after, fingerprint string) string {
	b, _ := json.Marshal(token{After: after, Filter: fingerprint}) // cannot fail: two strings
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode returns the key after which the next page starts. An empty token decodes to
// "" (the first page).
func Decode(s, fingerprint string) (string, error) {
	if s == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", ErrInvalid
	}
	var t token
	if err := json.Unmarshal(b, &t); err != nil || t.After == "" || t.Filter != fingerprint {
		return "", ErrInvalid
	}
	return t.After, nil
}

// Size returns the page size to serve for a request's page_size n: def when n is 0,
// max when n is larger.
func Size(n int32, def, max int) int {
	switch {
	case n <= 0:
		return def
	case int(n) > max:
		return max
	}
	return int(n)
}

// MessageFingerprint digests request m with clear applied to a copy of it first (to
// blank what may change between pages, or the request_id of an idempotent create):
// the same request gives the same digest, for page tokens and request records alike.
func MessageFingerprint[T proto.Message](m T, clear func(T)) string {
	c := proto.CloneOf(m)
	clear(c)
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c) // a valid message marshals
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// Collect reads every page of a List RPC from a client's side: page is called with
// "", then with each next-page token it returned, until one comes back empty; the
// items of all the pages, in order.
func Collect[T any](page func(token string) (items []T, next string, err error)) ([]T, error) {
	var all []T
	token := ""
	for {
		items, next, err := page(token)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		token = next
	}
}
