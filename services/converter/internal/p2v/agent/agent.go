// Package agent streams a physical server's disks to a converter worker: the
// server, booted into a live Linux, runs the small static agent (Handler), and the
// worker fetches each disk in verified chunks (Fetch).
//
// The agent opens the disks read-only. Each chunk is sent with its SHA-256; a chunk
// of zeros is answered 204 and costs no bytes on the wire (the worker leaves a hole
// in its sparse copy). A broken or corrupted chunk is fetched again, and a fetch
// that stops goes on from the first chunk not yet verified.
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultChunkSize is the unit of verification and of retry.
const DefaultChunkSize = 16 << 20

// DiskInfo describes a served disk.
type DiskInfo struct {
	Index     int    `json:"index"`
	Path      string `json:"path"`
	Size      int64  `json:"size_bytes"`
	ChunkSize int64  `json:"chunk_bytes"`
}

// MaxReaders is how many chunks the agent reads and sends at once; more requests
// wait their turn (each holds a chunk's buffer until its client has it all).
const MaxReaders = 4

// Handler serves disks read-only.
type Handler struct {
	disks []*os.File
	info  []DiskInfo
	token string
	pool  sync.Pool
	slots chan struct{}
	// Log hears read errors, with the disk's path (clients are told less).
	Log func(msg string, args ...any)
	// Identities, when set, are the client certificate identities (common names)
	// the agent serves on its mutual-TLS listener: a verified certificate of
	// another identity is refused (403), whatever token it brings.
	Identities []string
}

// NewHandler opens paths read-only. Clients must send token as "Authorization:
// Bearer <token>"; an empty token is refused (anyone who reaches the agent would
// read the disks).
func NewHandler(paths []string, chunk int64, token string) (*Handler, error) {
	return newHandler(paths, chunk, token, nil)
}

// NewTLSHandler serves paths to clients of a mutual-TLS listener whose verified
// certificate names one of identities (the converter workers'); the token is then
// optional (checked when set).
func NewTLSHandler(paths []string, chunk int64, token string, identities []string) (*Handler, error) {
	if len(identities) == 0 {
		return nil, errors.New("agent: name the client identities to serve (the converter workers' certificates)")
	}
	return newHandler(paths, chunk, token, identities)
}

func newHandler(paths []string, chunk int64, token string, identities []string) (*Handler, error) {
	if token == "" && len(identities) == 0 {
		return nil, errors.New("agent: a token is required: whoever reaches the agent without one reads the server's disks")
	}
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	h := &Handler{token: token, slots: make(chan struct{}, MaxReaders), Log: func(string, ...any) {}, Identities: identities}
	h.pool.New = func() any { b := make([]byte, chunk); return &b }
	for i, p := range paths {
		f, err := os.OpenFile(p, os.O_RDONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("agent: open %s read-only: %w", p, err)
		}
		size, err := f.Seek(0, io.SeekEnd) // works for block devices too
		if err != nil {
			return nil, fmt.Errorf("agent: size of %s: %w", p, err)
		}
		h.disks = append(h.disks, f)
		h.info = append(h.info, DiskInfo{Index: i, Path: p, Size: size, ChunkSize: chunk})
	}
	return h, nil
}

// Close closes the disks.
func (h *Handler) Close() error {
	var errs []error
	for _, f := range h.disks {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(h.Identities) > 0 {
		id := ""
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
			id = r.TLS.VerifiedChains[0][0].Subject.CommonName
		}
		if !slices.Contains(h.Identities, id) {
			http.Error(w, "this client certificate's identity is not served", http.StatusForbidden)
			return
		}
	}
	if h.token != "" {
		got, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !bearer || subtle.ConstantTimeCompare([]byte(got), []byte(h.token)) != 1 {
			http.Error(w, "a valid bearer token is required", http.StatusUnauthorized)
			return
		}
	}
	if r.Method != http.MethodGet {
		http.Error(w, "GET only: the agent never writes", http.StatusMethodNotAllowed)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "v1" && parts[1] == "disks":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h.info)
	case len(parts) == 5 && parts[0] == "v1" && parts[1] == "disks" && parts[3] == "chunks":
		d, err1 := strconv.Atoi(parts[2])
		n, err2 := strconv.ParseInt(parts[4], 10, 64)
		// Bounds before any multiplication: a huge n must not wrap to chunk 0.
		if err1 != nil || err2 != nil || d < 0 || d >= len(h.disks) || n < 0 || n >= chunks(h.info[d]) {
			http.Error(w, "no such disk or chunk", http.StatusNotFound)
			return
		}
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
		case <-r.Context().Done():
			return
		}
		h.chunk(w, d, n)
	default:
		http.Error(w, "GET /v1/disks or /v1/disks/{i}/chunks/{n}", http.StatusNotFound)
	}
}

func (h *Handler) chunk(w http.ResponseWriter, d int, n int64) {
	info := h.info[d]
	off := n * info.ChunkSize
	size := min(info.ChunkSize, info.Size-off)
	bp := h.pool.Get().(*[]byte)
	defer h.pool.Put(bp)
	buf := (*bp)[:size]
	if _, err := h.disks[d].ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		h.Log("read error", "disk", info.Path, "offset", off, "error", err)
		http.Error(w, fmt.Sprintf("disk %d: read error at chunk %d (see the agent's log)", d, n), http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(buf)
	w.Header().Set("X-Chunk-Sha256", hex.EncodeToString(sum[:]))
	w.Header().Set("X-Chunk-Size", strconv.FormatInt(size, 10))
	if allZero(buf) {
		w.Header().Set("X-Chunk-Zero", "1")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	_, _ = w.Write(buf)
}

// chunks is how many chunks a disk has.
func chunks(d DiskInfo) int64 { return (d.Size + d.ChunkSize - 1) / d.ChunkSize }

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ErrChecksum is a chunk whose bytes did not match its SHA-256, again and again.
var ErrChecksum = errors.New("agent: chunk checksum mismatch")

// Progress is a fetch's state, kept by the caller between attempts.
type Progress struct {
	Size      int64 `json:"size_bytes"`
	ChunkSize int64 `json:"chunk_bytes"`
	// Verified is how many chunks, from the start, are verified in the copy.
	Verified int64 `json:"verified"`
	// Transferred are the bytes received over the network in all attempts.
	Transferred int64 `json:"transferred_bytes"`
	// Zero counts the chunks that were zeros (holes in the copy).
	Zero int64 `json:"zero_chunks"`
}

// defaultHTTP is the client of an http agent.
var defaultHTTP = NewHTTPClient(nil)

// NewHTTPClient is an agent client's HTTP client: its TLS configuration (nil for an
// http agent), and a bound on one chunk's request (16 MiB even over a slow link).
func NewHTTPClient(tc *tls.Config) *http.Client {
	if tc == nil {
		return &http.Client{Timeout: 5 * time.Minute}
	}
	return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
}

// Client fetches disks from an agent.
type Client struct {
	URL   string // "http://10.0.0.5:7420"
	Token string
	HTTP  *http.Client // nil: defaultHTTP
	// Retries is how often one chunk is fetched again (broken or corrupted).
	Retries int
}

func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.URL, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	return hc.Do(req)
}

// Disks lists the agent's disks.
func (c *Client) Disks(ctx context.Context) ([]DiskInfo, error) {
	resp, err := c.get(ctx, "/v1/disks")
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent %s: %s", c.URL, resp.Status)
	}
	var out []DiskInfo
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// Fetch copies disk d into the sparse file at dst, from the first chunk p does not
// have verified, calling save with p after each verified chunk (so that a stopped
// fetch goes on from there: give it the same dst and the saved p).
func (c *Client) Fetch(ctx context.Context, d int, dst string, p *Progress, save func(*Progress) error) error {
	disks, err := c.Disks(ctx)
	if err != nil {
		return err
	}
	if d < 0 || d >= len(disks) {
		return fmt.Errorf("agent %s has %d disk(s), no disk %d", c.URL, len(disks), d)
	}
	info := disks[d]
	if p.Size != info.Size || p.ChunkSize != info.ChunkSize {
		*p = Progress{Size: info.Size, ChunkSize: info.ChunkSize} // another disk or chunking: from the start
	}
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if fi.Size() < p.Verified*p.ChunkSize && p.Verified*p.ChunkSize < info.Size {
		p.Verified = 0 // the copy is not the one the progress speaks of
	}
	if err := f.Truncate(info.Size); err != nil {
		return err
	}
	chunks := (info.Size + info.ChunkSize - 1) / info.ChunkSize
	retries := max(c.Retries, 3)
	for n := p.Verified; n < chunks; n++ {
		var err error
		for try := 0; try <= retries; try++ {
			if err = c.chunk(ctx, d, n, f, p); err == nil || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("agent %s: disk %d chunk %d: %w", c.URL, d, n, err)
		}
		p.Verified = n + 1
		if save != nil {
			if err := save(p); err != nil {
				return err
			}
		}
	}
	return f.Sync()
}

func (c *Client) chunk(ctx context.Context, d int, n int64, f *os.File, p *Progress) error {
	resp, err := c.get(ctx, fmt.Sprintf("/v1/disks/%d/chunks/%d", d, n))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	want := resp.Header.Get("X-Chunk-Sha256")
	off := n * p.ChunkSize
	size := min(p.ChunkSize, p.Size-off)
	switch resp.StatusCode {
	case http.StatusNoContent:
		if resp.Header.Get("X-Chunk-Zero") != "1" {
			return fmt.Errorf("an empty answer that is not a zero chunk")
		}
		// A hole: the copy was truncated to size, and zeros are what a hole reads.
		if err := punch(f, off, size); err != nil {
			return err
		}
		p.Zero++
		return nil
	case http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	h := sha256.New()
	w := io.NewOffsetWriter(f, off)
	got, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(resp.Body, size+1))
	p.Transferred += got
	if err != nil {
		return err
	}
	if got != size {
		return fmt.Errorf("%d bytes, want %d", got, size)
	}
	if hex.EncodeToString(h.Sum(nil)) != want {
		return ErrChecksum
	}
	return nil
}
