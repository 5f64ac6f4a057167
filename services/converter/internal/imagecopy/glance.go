package imagecopy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"golang.org/x/time/rate"
)

// Glance is the part of one cloud's image API an image copy uses.
type Glance interface {
	// Image returns an image's record.
	Image(ctx context.Context, id string) (*images.Image, error)
	// Download streams bytes from..to (inclusive) of an image's data; to < 0 means
	// to the end.
	Download(ctx context.Context, id string, from, to int64) (io.ReadCloser, error)
	// Create creates an image record (queued, no data).
	Create(ctx context.Context, opts images.CreateOptsBuilder) (*images.Image, error)
	// Upload streams an image's data from r (one PUT; Glance cannot resume it).
	Upload(ctx context.Context, id string, r io.Reader) error
	// Delete deletes an image; one already gone is not an error.
	Delete(ctx context.Context, id string) error
	// Tagged lists the images (hidden ones included) that carry tag.
	Tagged(ctx context.Context, tag string) ([]images.Image, error)
	// Named lists the images (hidden ones included) named name.
	Named(ctx context.Context, name string) ([]images.Image, error)
}

// NewGlance returns a Glance over a gophercloud image v2 client.
func NewGlance(sc *gophercloud.ServiceClient) Glance { return glance{sc} }

type glance struct{ sc *gophercloud.ServiceClient }

func (g glance) Image(ctx context.Context, id string) (*images.Image, error) {
	return images.Get(ctx, g.sc, id).Extract()
}

func (g glance) Download(ctx context.Context, id string, from, to int64) (io.ReadCloser, error) {
	rng := fmt.Sprintf("bytes=%d-", from)
	if to >= 0 {
		rng = fmt.Sprintf("bytes=%d-%d", from, to)
	}
	resp, err := g.sc.Get(ctx, g.sc.ServiceURL("images", id, "file"), nil, &gophercloud.RequestOpts{
		KeepResponseBody: true,
		OkCodes:          []int{http.StatusOK, http.StatusPartialContent},
		MoreHeaders:      map[string]string{"Range": rng},
	})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK && from > 0 {
		// Glance ignored the Range: skip what is not wanted (never expected; counted).
		if _, err := io.CopyN(io.Discard, resp.Body, from); err != nil {
			_ = resp.Body.Close()
			return nil, fmt.Errorf("image %s: Range not honoured and skipping failed: %w", id, err)
		}
	}
	return resp.Body, nil
}

func (g glance) Create(ctx context.Context, opts images.CreateOptsBuilder) (*images.Image, error) {
	return images.Create(ctx, g.sc, opts).Extract()
}

func (g glance) Upload(ctx context.Context, id string, r io.Reader) error {
	return imagedata.Upload(ctx, g.sc, id, r).ExtractErr()
}

func (g glance) Tagged(ctx context.Context, tag string) ([]images.Image, error) {
	return g.list(ctx, images.ListOpts{Tags: []string{tag}})
}

func (g glance) Named(ctx context.Context, name string) ([]images.Image, error) {
	return g.list(ctx, images.ListOpts{Name: name})
}

// list lists the images opts selects, hidden ones included (Glance lists them only
// when asked for them alone).
func (g glance) list(ctx context.Context, opts images.ListOpts) ([]images.Image, error) {
	var out []images.Image
	for _, hidden := range []bool{false, true} {
		opts.Hidden = hidden
		pages, err := images.List(g.sc, opts).AllPages(ctx)
		if err != nil {
			return nil, err
		}
		list, err := images.ExtractImages(pages)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	return out, nil
}

func (g glance) Delete(ctx context.Context, id string) error {
	err := images.Delete(ctx, g.sc, id).ExtractErr()
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	}
	return err
}

// ChunkImages returns the chunk images of the copy into an image named name (all
// chunk images when name is empty).
func ChunkImages(ctx context.Context, g Glance, name string) ([]images.Image, error) {
	list, err := g.Tagged(ctx, ChunkTag)
	if err != nil {
		return nil, err
	}
	var out []images.Image
	for _, img := range list {
		if name == "" || strings.HasPrefix(img.Name, name+".part-") {
			out = append(out, img)
		}
	}
	return out, nil
}

// Throttle caps the rate at which g's downloads are read to bytesPerSecond (0: g
// itself): an operator's bandwidth limit for copies between clouds.
func Throttle(g Glance, bytesPerSecond int64) Glance {
	if bytesPerSecond <= 0 {
		return g
	}
	return throttled{g, rate.NewLimiter(rate.Limit(bytesPerSecond), int(min(bytesPerSecond, 1<<20)))}
}

type throttled struct {
	Glance
	lim *rate.Limiter
}

func (t throttled) Download(ctx context.Context, id string, from, to int64) (io.ReadCloser, error) {
	rc, err := t.Glance.Download(ctx, id, from, to)
	if err != nil {
		return nil, err
	}
	return &limitedReader{ctx: ctx, rc: rc, lim: t.lim}, nil
}

type limitedReader struct {
	ctx context.Context
	rc  io.ReadCloser
	lim *rate.Limiter
}

func (l *limitedReader) Read(b []byte) (int, error) {
	if len(b) > l.lim.Burst() {
		b = b[:l.lim.Burst()]
	}
	n, err := l.rc.Read(b)
	if n > 0 {
		if werr := l.lim.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (l *limitedReader) Close() error { return l.rc.Close() }

// Named returns the images named name (hidden ones included).
func Named(ctx context.Context, g Glance, name string) ([]images.Image, error) {
	return g.Named(ctx, name)
}

// Link caps what crosses a link between two sites at bytesPerSecond, both ways:
// g's downloads as they are read and its uploads as they are sent (0: g itself).
// For a benchmark that models two data centres on one machine, and for an
// operator's cap on a worker's traffic to a cloud across a link.
func Link(g Glance, bytesPerSecond int64) Glance {
	if bytesPerSecond <= 0 {
		return g
	}
	t := throttled{g, rate.NewLimiter(rate.Limit(bytesPerSecond), int(min(bytesPerSecond, 1<<20)))}
	return linked{t}
}

type linked struct{ throttled }

func (l linked) Upload(ctx context.Context, id string, r io.Reader) error {
	return l.Glance.Upload(ctx, id, &limitedReader{ctx: ctx, rc: io.NopCloser(r), lim: l.lim})
}

// waitLink waits until n more bytes may cross g's link (a Link), at once when g
// has no cap: for bytes that cross the link without a Glance call (a warm
// cut-over's new pieces handed to the assembly).
func waitLink(ctx context.Context, g Glance, n int) error {
	l, ok := g.(linked)
	if !ok {
		return nil
	}
	for n > 0 {
		k := min(n, l.lim.Burst())
		if err := l.lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
