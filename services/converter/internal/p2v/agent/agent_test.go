package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const chunk = 1 << 20

// disk writes a 32 MiB disk image: random bytes in some chunks, zeros elsewhere.
func disk(t *testing.T) (string, []byte) {
	t.Helper()
	b := make([]byte, 32<<20)
	r := rand.NewChaCha8([32]byte{7})
	for _, c := range []int{0, 1, 5, 9, 10, 20, 31} {
		_, _ = r.Read(b[c*chunk : (c+1)*chunk])
	}
	b[len(b)-1] = 0xff // a non-zero last byte
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// faults breaks chosen requests: a reset in mid-body, a flipped byte.
type faults struct {
	h        http.Handler
	mu       sync.Mutex
	reset    map[string]int // path → times left
	flip     map[string]int
	requests map[string]int
}

func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests[r.URL.Path]++
	reset, flip := f.reset[r.URL.Path] > 0, f.flip[r.URL.Path] > 0
	if reset {
		f.reset[r.URL.Path]--
	}
	if flip {
		f.flip[r.URL.Path]--
	}
	f.mu.Unlock()
	if !reset && !flip {
		f.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	body := rec.Body.Bytes()
	w.WriteHeader(rec.Code)
	if reset {
		_, _ = w.Write(body[:len(body)/2])
		panic(http.ErrAbortHandler) // the connection is cut mid-chunk
	}
	body[len(body)/3] ^= 0x01
	_, _ = w.Write(body)
}

func serve(t *testing.T, path, token string) (*faults, string) {
	t.Helper()
	h, err := NewHandler([]string{path}, chunk, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	f := &faults{h: h, reset: map[string]int{}, flip: map[string]int{}, requests: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func TestFetchVerifiedSparseResumable(t *testing.T) {
	path, want := disk(t)
	f, url := serve(t, path, "s3cret")
	f.reset["/v1/disks/0/chunks/5"] = 1
	f.flip["/v1/disks/0/chunks/9"] = 1
	dst := filepath.Join(t.TempDir(), "copy.raw")
	c := &Client{URL: url, Token: "s3cret"}
	p := &Progress{}
	// Stop after 12 chunks (a worker's context ends), then go on.
	ctx, cancel := context.WithCancel(t.Context())
	err := c.Fetch(ctx, 0, dst, p, func(p *Progress) error {
		if p.Verified == 12 {
			cancel()
		}
		return nil
	})
	if err == nil || p.Verified != 12 {
		t.Fatalf("first fetch: %v, verified %d", err, p.Verified)
	}
	before := map[string]int{}
	for k, v := range f.requests {
		before[k] = v
	}
	if err := c.Fetch(t.Context(), 0, dst, p, nil); err != nil {
		t.Fatal(err)
	}
	for n := range 12 {
		k := "/v1/disks/0/chunks/" + itoa(n)
		if f.requests[k] != before[k] {
			t.Fatalf("chunk %d, verified before, was fetched again", n)
		}
	}
	got, _ := os.ReadFile(dst)
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatal("the copy differs from the disk")
	}
	// 7 chunks hold data; 25 are zeros and cross no wire. On the wire: the 7, half of
	// chunk 5 before the reset, and chunk 9 once more after its flipped byte.
	if p.Zero != 25 || p.Transferred != 7*chunk+chunk/2+chunk {
		t.Fatalf("zero chunks %d, transferred %d bytes", p.Zero, p.Transferred)
	}
	var st syscall.Stat_t
	_ = syscall.Stat(dst, &st)
	if st.Blocks*512 > 12*chunk {
		t.Fatalf("the copy takes %d bytes on disk: not sparse", st.Blocks*512)
	}
	if f.requests["/v1/disks/0/chunks/5"] != 2 || f.requests["/v1/disks/0/chunks/9"] != 2 {
		t.Fatalf("a reset and a flipped chunk should be fetched twice: %v", f.requests)
	}
	t.Logf("32 MiB disk: %d bytes on the wire (a reset and a flipped byte fetched again), %d zero chunks as holes; resumed at chunk 12", p.Transferred, p.Zero)
}

func TestFetchRefusals(t *testing.T) {
	path, _ := disk(t)
	f, url := serve(t, path, "s3cret")
	if _, err := (&Client{URL: url, Token: "wrong"}).Disks(t.Context()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a wrong token: %v", err)
	}
	f.flip["/v1/disks/0/chunks/1"] = 100 // corrupted every time
	err := (&Client{URL: url, Token: "s3cret"}).Fetch(t.Context(), 0, filepath.Join(t.TempDir(), "c.raw"), &Progress{}, nil)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("persistent corruption: %v, want a checksum error", err)
	}
	if err := (&Client{URL: url, Token: "s3cret"}).Fetch(t.Context(), 3, filepath.Join(t.TempDir(), "c.raw"), &Progress{}, nil); err == nil {
		t.Fatal("disk 3 of 1 fetched")
	}
	req, _ := http.NewRequest(http.MethodPut, url+"/v1/disks/0/chunks/0", bytes.NewReader(nil))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("a PUT: %v %v", resp, err)
	}
	_ = resp.Body.Close()
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestAgentBounds: no token, no agent; a token without "Bearer " is refused; chunk
// indexes past the end (2^39 panicked, 2^40 wrapped to chunk 0, 2^63-1 gave a 500
// naming the disk) are 404; a read error does not name the disk's path (issue 16,
// finding 6).
func TestAgentBounds(t *testing.T) {
	path, _ := disk(t)
	if _, err := NewHandler([]string{path}, chunk, ""); err == nil {
		t.Fatal("an agent without a token was made")
	}
	h, err := NewHandler([]string{path}, chunk, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	get := func(p, auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, p, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	if rec := get("/v1/disks", "s3cret"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("a token without Bearer: %d", rec.Code)
	}
	if rec := get("/v1/disks/0/chunks/0", "Bearer s3cret"); rec.Code != http.StatusOK && rec.Code != http.StatusNoContent {
		t.Fatalf("chunk 0: %d", rec.Code)
	}
	for _, n := range []string{"32", "549755813888", "1099511627776", "9223372036854775807", "-1", "99999999999999999999"} {
		if rec := get("/v1/disks/0/chunks/"+n, "Bearer s3cret"); rec.Code != http.StatusNotFound {
			t.Fatalf("chunk %s of a 32-chunk disk: %d %s", n, rec.Code, rec.Body)
		}
	}
	_ = h.disks[0].Close() // the next read fails
	rec := get("/v1/disks/0/chunks/1", "Bearer s3cret")
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), path) {
		t.Fatalf("a read error: %d %q (must not name %s)", rec.Code, rec.Body, path)
	}
}
