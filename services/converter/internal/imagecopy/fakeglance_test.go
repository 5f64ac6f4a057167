package imagecopy

import (
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
)

// fakeGlance is an in-memory Glance v2 image API: create, upload, download with
// Range (206), get, delete; it computes checksum (MD5) and the sha512 multihash like
// Glance. breakAt makes one download end abruptly after that many bytes; corruptAt
// flips one byte of every download that covers it.
type fakeGlance struct {
	mu        sync.Mutex
	images    map[string]map[string]any
	data      map[string][]byte
	next      int
	breakAt   int64
	corruptAt int64
	reads     int64 // bytes served by downloads
	// failPut, when set, is asked about every upload (by image name): true makes
	// that upload fail halfway through its body, as a broken destination would.
	failPut  func(name string) bool
	inflight int // downloads being served
	srv      *httptest.Server
}

// served returns the bytes served by downloads once none is in flight (a download
// cancelled by the client may still be finishing on the server side).
func (g *fakeGlance) served() int64 {
	for {
		g.mu.Lock()
		n, busy := g.reads, g.inflight
		g.mu.Unlock()
		if busy == 0 {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newFakeGlance(t *testing.T) *fakeGlance {
	g := &fakeGlance{images: map[string]map[string]any{}, data: map[string][]byte{}, breakAt: -1, corruptAt: -1}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGlance) client() Glance {
	pc := &gophercloud.ProviderClient{HTTPClient: *g.srv.Client()}
	return NewGlance(&gophercloud.ServiceClient{ProviderClient: pc, Endpoint: g.srv.URL + "/", ResourceBase: g.srv.URL + "/v2/"})
}

// put stores an active image with data and properties.
func (g *fakeGlance) put(name string, data []byte, props map[string]any) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	id := g.newID()
	img := map[string]any{"id": id, "name": name, "status": "queued", "disk_format": "qcow2", "container_format": "bare", "min_disk": 1, "visibility": "private"}
	for k, v := range props {
		img[k] = v
	}
	g.images[id] = img
	g.store(id, data)
	return id
}

func (g *fakeGlance) newID() string {
	g.next++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", g.next)
}

func (g *fakeGlance) store(id string, data []byte) {
	img := g.images[id]
	g.data[id] = data
	m := md5.Sum(data)
	s := sha512.Sum512(data)
	img["checksum"], img["os_hash_algo"], img["os_hash_value"] = hex.EncodeToString(m[:]), "sha512", hex.EncodeToString(s[:])
	img["size"], img["status"] = len(data), "active"
}

func (g *fakeGlance) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.images)
}

func (g *fakeGlance) serve(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/v2/images")
	id, sub, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	g.mu.Lock()
	img := g.images[id]
	g.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && path == "":
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		g.mu.Lock()
		body["id"], body["status"] = g.newID(), "queued"
		g.images[body["id"].(string)] = body
		g.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(body)
	case r.Method == http.MethodGet && path == "":
		tag, hidden, name := r.URL.Query().Get("tag"), r.URL.Query().Get("os_hidden") == "true", r.URL.Query().Get("name")
		out := []map[string]any{}
		g.mu.Lock()
		for _, im := range g.images {
			h, _ := im["os_hidden"].(bool)
			tags, _ := im["tags"].([]any)
			has := tag == ""
			for _, t := range tags {
				has = has || t == tag
			}
			if has && h == hidden && (name == "" || im["name"] == name) {
				out = append(out, im)
			}
		}
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"images": out})
	case img == nil:
		http.Error(w, "no such image", http.StatusNotFound)
	case r.Method == http.MethodGet && sub == "":
		g.mu.Lock()
		b, _ := json.Marshal(img)
		g.mu.Unlock()
		_, _ = w.Write(b)
	case r.Method == http.MethodDelete:
		g.mu.Lock()
		delete(g.images, id)
		delete(g.data, id)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPut && sub == "file":
		g.mu.Lock()
		name, _ := img["name"].(string)
		fail := g.failPut != nil && g.failPut(name)
		g.mu.Unlock()
		if fail {
			_, _ = io.CopyN(io.Discard, r.Body, 100*1024)
			http.Error(w, "the store broke", http.StatusInternalServerError)
			return
		}
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.store(id, data)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && sub == "file":
		g.mu.Lock()
		g.inflight++
		defer func() { g.mu.Lock(); g.inflight--; g.mu.Unlock() }()
		data := g.data[id]
		from, to := int64(0), int64(len(data)-1)
		if rng := strings.TrimPrefix(r.Header.Get("Range"), "bytes="); rng != "" {
			a, b, _ := strings.Cut(rng, "-")
			from, _ = strconv.ParseInt(a, 10, 64)
			if b != "" {
				to, _ = strconv.ParseInt(b, 10, 64)
			}
		}
		out := append([]byte(nil), data[from:to+1]...)
		if g.corruptAt >= from && g.corruptAt <= to {
			out[g.corruptAt-from] ^= 0xff
		}
		cut := int64(-1)
		if g.breakAt >= from && g.breakAt <= to {
			cut, g.breakAt = g.breakAt-from, -1
		}
		g.mu.Unlock()
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(http.StatusPartialContent)
		if cut >= 0 {
			_, _ = w.Write(out[:cut])
			g.mu.Lock()
			g.reads += cut
			g.mu.Unlock()
			panic(http.ErrAbortHandler) // the connection breaks mid-body
		}
		_, _ = w.Write(out)
		g.mu.Lock()
		g.reads += int64(len(out))
		g.mu.Unlock()
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusMethodNotAllowed)
	}
}
