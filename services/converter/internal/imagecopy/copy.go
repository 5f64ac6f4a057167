// Package imagecopy copies a Glance image from one cloud to another as a stream:
// downloaded and uploaded at once, never staged whole on disk or in memory, with
// SHA-256 and the source's multihash (os_hash_value) computed on the way and
// compared at the end, and resumable across workers.
//
// A broken source read goes on where it broke: the rest is asked for with an HTTP
// Range request inside the same upload (sourceReader), so it costs only the bytes
// that were in flight.
//
// Resuming across workers: Glance cannot resume an upload (one PUT), and a worker
// that dies loses whatever it had locally. So the copy moves the image in chunks
// (64 MiB by default): each chunk is read from the source with a Range request and
// streamed into a hidden chunk image in the destination Glance, whose size and MD5
// (Glance's checksum) are checked against what was read. Each verified chunk is
// recorded with the running hash states (Save), so a worker taking over — or a retry
// after a broken upload — starts from the first missing chunk: bytes already across
// are not read from the source again.
//
// The final image is written in the same pass (Tee): the bytes of each chunk go
// into its chunk image and into the final image's one upload at once, so there is
// no assembly pass after the last chunk. When the final upload breaks, or a worker
// dies, the chunk images are still whole: a new final image is written from them
// inside the destination (the bytes do not cross the link again) and the copy goes
// on. The chunk images are deleted once the final image is verified against the
// source's digests.
//
// Why Tee, by numbers (scripts/bench.sh copy, docs/benchmarks.md; the dev cloud,
// 2 cores, one glance-api process per cloud): over a link of 100 MB/s Tee copies
// 1 GiB at 0.90× a bare GET|PUT pipe, Stream (one upload, no chunk images) at 0.99×,
// and the earlier path (AssembleAfter: every chunk across, then an assembly pass) at
// 0.66×. Over loopback the destination Glance, not the link, is the limit: Tee
// writes every byte twice there and runs at 0.40–0.46× the pipe, Stream at
// 0.63–1.01×. Tee keeps what resuming gives — a worker's death or a broken upload
// costs at most one chunk read again across the link — for 10% of the time where
// the link is the limit, which is where copies between data centres are; Stream
// gives that up (a worker's death starts the copy over) and is the choice only
// where the link is as fast as the destination's store and starting over is cheap.
//
// An image that fits in one chunk skips the chunk image: it is streamed straight
// into the final image, checked the same way (a broken upload writes that one chunk
// again, which is all a chunk image would save).
//
// The final image carries the source image's ID (SourceProperty), so a worker taking
// over finds what a dead one left under the copy's name: a whole image (verified
// against the source's digests) is taken as it is, anything else is deleted before a
// new one is made — a copy never leaves two.
package imagecopy

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
)

// DefaultChunkSize is the size of the pieces a copy moves and records.
const DefaultChunkSize = 64 << 20

// ChunkTag marks the hidden chunk images of copies in flight.
const ChunkTag = "hikkoshi-chunk"

// SourceProperty is the final image's property naming the source image it copies.
const SourceProperty = "hikkoshi_source_image"

// ErrChecksum is a copy whose bytes do not match the source's digest.
var ErrChecksum = errors.New("imagecopy: checksum mismatch")

// Copier copies images from Src to Dst.
type Copier struct {
	Src, Dst Glance
	// ChunkSize is the chunk length; 0 means DefaultChunkSize.
	ChunkSize int64
	// Retries is how many times a chunk is tried again after a broken read or upload.
	Retries int
	// Save records progress after each verified chunk (the job record); a copy taken
	// over starts from what was saved.
	Save func(context.Context, *converterv1.CopyProgress) error
	// Observe, when set, sees the progress after each chunk and while assembling.
	Observe func(*converterv1.CopyProgress)
	// Mode is how an image larger than one chunk reaches its final image: Tee (the
	// zero value) unless a benchmark or an operator says otherwise.
	Mode Mode
}

// Mode is how a copy of an image larger than one chunk writes its final image.
type Mode int

const (
	// Tee writes each chunk's bytes into its chunk image and, in the same pass,
	// into the final image's upload: the link carries the bytes once, the assembly
	// costs no pass of its own, and a worker's death or a broken upload still costs
	// at most one chunk read again (the chunk images stay until the final image is
	// whole; a copy taken over writes them into a new final image, read back inside
	// the destination, and goes on).
	Tee Mode = iota
	// AssembleAfter moves every chunk across first and then streams the chunk
	// images into the final image (the path before Tee; what Tee falls back to).
	AssembleAfter
	// Stream sends the whole image in one upload with no chunk images: a broken
	// source read still resumes by Range inside it, but a broken upload or a
	// worker's death starts the copy over.
	Stream
)

// carried are the image properties a boot in the destination needs.
func carried(src *images.Image) map[string]string {
	out := map[string]string{}
	for k, v := range src.Properties {
		s, ok := v.(string)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(k, "hw_"), strings.HasPrefix(k, "img_"), k == "os_distro", k == "os_version", k == "os_type",
			k == "architecture", k == "hypervisor_type", k == "vm_mode", k == "os_admin_user":
			out[k] = s
		}
	}
	return out
}

func newMultihash(algo string) (hash.Hash, error) {
	switch algo {
	case "sha512":
		return sha512.New(), nil
	case "sha256":
		return sha256.New(), nil
	case "":
		return nil, nil
	}
	return nil, fmt.Errorf("imagecopy: source os_hash_algo %q is not supported (sha512, sha256)", algo)
}

func restore(h hash.Hash, state []byte) error {
	if h == nil || len(state) == 0 {
		return nil
	}
	return h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
}

func snapshot(h hash.Hash) []byte {
	if h == nil {
		return nil
	}
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary() // the standard hashes marshal
	return b
}

func osHash(img *images.Image) (algo, value string) {
	a, _ := img.Properties["os_hash_algo"].(string)
	v, _ := img.Properties["os_hash_value"].(string)
	return a, v
}

// Copy copies image srcID into a new image named name in Dst and returns its ID.
// p is the progress saved so far (empty for a new copy) and is updated in place.
// On ErrChecksum nothing is left in Dst; on other errors the verified chunks stay
// for a retry to continue from (Cleanup deletes them).
func (c *Copier) Copy(ctx context.Context, srcID, name string, p *converterv1.CopyProgress) (string, error) {
	chunkSize := c.ChunkSize
	if chunkSize <= 0 {
		chunkSize = DefaultChunkSize
	}
	src, err := c.Src.Image(ctx, srcID)
	if err != nil {
		return "", fmt.Errorf("imagecopy: source image %s: %w", srcID, err)
	}
	if src.Status != images.ImageStatusActive {
		return "", fmt.Errorf("imagecopy: source image %s is %s, not active", srcID, src.Status)
	}
	algo, want := osHash(src)
	p.TotalBytes, p.ImageName = src.SizeBytes, name
	if p.GetOsHashAlgo() == "" {
		p.OsHashAlgo = algo
	}
	sum := sha256.New()
	mh, err := newMultihash(p.GetOsHashAlgo())
	if err != nil {
		return "", err
	}
	done, err := c.earlier(ctx, src, name)
	if err != nil {
		return "", fmt.Errorf("imagecopy: images an earlier attempt left: %w", err)
	}
	if done != "" {
		// A dead worker finished the image but did not live to record it (its chunks
		// may be deleted already: the recorded hash state still gives the SHA-256).
		if p.GetSha256() == "" && p.GetDoneBytes() == p.GetTotalBytes() && restore(sum, p.GetSha256State()) == nil && len(p.GetSha256State()) > 0 {
			p.Sha256 = hex.EncodeToString(sum.Sum(nil))
		}
		if err := c.Cleanup(ctx, p); err != nil {
			return done, fmt.Errorf("imagecopy: image %s is whole, but deleting its chunk images failed: %w", done, err)
		}
		return done, nil
	}
	if err := c.resume(ctx, p, sum, mh); err != nil {
		return "", err
	}
	if err := c.orphans(ctx, p); err != nil {
		return "", fmt.Errorf("imagecopy: delete chunk images a dead worker left: %w", err)
	}
	if len(p.GetChunks()) == 0 && (p.GetTotalBytes() <= chunkSize || c.Mode == Stream) {
		return c.direct(ctx, src, name, p, sum, mh)
	}
	// The final image, written while the chunks are (Tee): nil until opened, and
	// again after a chunk attempt broke it; aborted on every way out but success.
	var final *finalStream
	defer func() {
		if final != nil {
			final.abort(ctx, errors.New("imagecopy: the copy ended early"))
		}
	}()
	tees := 0 // final streams opened: a copy whose destination keeps breaking stops trying
	start := time.Now()
	startDone := p.GetDoneBytes()
	for p.GetDoneBytes() < p.GetTotalBytes() {
		off := p.GetDoneBytes()
		size := min(chunkSize, p.GetTotalBytes()-off)
		var ch *converterv1.Chunk
		for attempt := 0; ; attempt++ {
			if final == nil && c.Mode == Tee && tees < 3 {
				tees++
				final = c.teeFinal(ctx, src, name, p)
			}
			var tee io.Writer
			if final != nil {
				tee = final
			}
			ch, err = c.chunk(ctx, srcID, name, len(p.GetChunks()), off, size, sum, mh, p, tee)
			if err == nil {
				break
			}
			if final != nil {
				// Its bytes of this chunk are not all there, or not right: drop it.
				final.abort(ctx, err)
				final = nil
			}
			if attempt >= c.Retries || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			return "", err
		}
		p.Chunks = append(p.Chunks, ch)
		p.DoneBytes += size
		p.Sha256State, p.OsHashState = snapshot(sum), snapshot(mh)
		if el := time.Since(start).Seconds(); el > 0 {
			p.BytesPerSecond = int64(float64(p.GetDoneBytes()-startDone) / el)
			if p.BytesPerSecond > 0 {
				p.EtaSeconds = (p.GetTotalBytes() - p.GetDoneBytes()) / p.BytesPerSecond
			}
		}
		if c.Save != nil {
			if err := c.Save(ctx, p); err != nil {
				return "", fmt.Errorf("imagecopy: record chunk %d: %w", len(p.GetChunks())-1, err)
			}
		}
		if c.Observe != nil {
			c.Observe(p)
		}
	}
	p.Sha256 = hex.EncodeToString(sum.Sum(nil))
	if mh != nil && want != "" && hex.EncodeToString(mh.Sum(nil)) != want {
		_ = c.Cleanup(context.WithoutCancel(ctx), p)
		return "", fmt.Errorf("%w: the bytes read from image %s have %s %s, the source says %s; the chunks are deleted",
			ErrChecksum, srcID, algo, hex.EncodeToString(mh.Sum(nil))[:16]+"…", want[:min(16, len(want))]+"…")
	}
	if final != nil {
		f := final
		final = nil
		if err := f.finish(ctx, src, p.GetSha256()); err == nil {
			return c.whole(ctx, f.id, p)
		}
		// The final upload broke or arrived wrong: assemble it again from the chunks.
	}
	return c.assemble(ctx, src, name, p)
}

// teeFinal opens the final image and writes into it the chunks already across (a
// copy taken over), so that the next chunk's bytes can follow; nil when that fails
// (the copy goes on, and assembles at the end).
func (c *Copier) teeFinal(ctx context.Context, src *images.Image, name string, p *converterv1.CopyProgress) *finalStream {
	f, err := c.openFinal(ctx, src, name)
	if err != nil {
		return nil
	}
	if err := f.feed(ctx, p.GetChunks()); err != nil {
		f.abort(ctx, err)
		return nil
	}
	return f
}

// resume restores the hash states of the verified chunks and checks they are still
// in Dst; from the first missing one on, chunks are dropped and read again.
func (c *Copier) resume(ctx context.Context, p *converterv1.CopyProgress, sum, mh hash.Hash) error {
	var done int64
	for i, ch := range p.GetChunks() {
		img, err := c.Dst.Image(ctx, ch.GetImageId())
		if err != nil || img.Status != images.ImageStatusActive || img.SizeBytes != ch.GetSize() || ch.GetOffset() != done {
			// Gone or not whole: start again from here (the hash states saved after the
			// last good chunk are not at hand, so from zero in that rare case).
			for _, bad := range p.GetChunks()[i:] {
				_ = c.Dst.Delete(ctx, bad.GetImageId())
			}
			if i == 0 {
				p.Chunks, p.DoneBytes, p.Sha256State, p.OsHashState = nil, 0, nil, nil
				return nil
			}
			return fmt.Errorf("imagecopy: chunk %d (%s) is no longer whole in the destination: %v", i, ch.GetImageId(), err)
		}
		done += ch.GetSize()
	}
	if done != p.GetDoneBytes() {
		return fmt.Errorf("imagecopy: recorded %d bytes done but the chunks hold %d", p.GetDoneBytes(), done)
	}
	if err := restore(sum, p.GetSha256State()); err != nil {
		return fmt.Errorf("imagecopy: restore the SHA-256 state: %w", err)
	}
	return restore(mh, p.GetOsHashState())
}

// chunk reads bytes off..off+size-1 of the source into a new chunk image and checks
// it arrived whole. The running hashes advance only when it did.
//
// tee, when set, gets the same bytes (the final image being written alongside).
func (c *Copier) chunk(ctx context.Context, srcID, name string, n int, off, size int64, sum, mh hash.Hash, p *converterv1.CopyProgress, tee io.Writer) (*converterv1.Chunk, error) {
	sumState, mhState := snapshot(sum), snapshot(mh)
	img, err := c.Dst.Create(ctx, images.CreateOpts{
		Name: fmt.Sprintf("%s.part-%04d", name, n), DiskFormat: "raw", ContainerFormat: "bare",
		Visibility: ptr(images.ImageVisibilityPrivate), Tags: []string{ChunkTag}, Hidden: ptr(true),
	})
	if err != nil {
		return nil, fmt.Errorf("imagecopy: create chunk image %d: %w", n, err)
	}
	fail := func(err error) (*converterv1.Chunk, error) {
		_ = c.Dst.Delete(context.WithoutCancel(ctx), img.ID)
		_ = restore(sum, sumState)
		_ = restore(mh, mhState)
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	body, err := newSourceReader(sctx, c.Src, srcID, off, off+size-1, c.Retries, &p.SourceResumes)
	if err != nil {
		return fail(fmt.Errorf("imagecopy: %w", err))
	}
	defer body.Close()
	chunkSum, chunkMD5 := sha256.New(), md5.New()
	writers := []io.Writer{chunkSum, chunkMD5, sum, &counter{p: p}}
	if mh != nil {
		writers = append(writers, mh)
	}
	if tee != nil {
		writers = append(writers, tee)
	}
	read, err := upload(ctx, c.Dst, img.ID, io.TeeReader(body, io.MultiWriter(writers...)), stop)
	if err != nil {
		return fail(fmt.Errorf("imagecopy: chunk %d (bytes %d-%d): %w", n, off, off+size-1, err))
	}
	if read != size {
		return fail(fmt.Errorf("imagecopy: chunk %d: the source gave %d bytes of %d", n, read, size))
	}
	got, err := c.Dst.Image(ctx, img.ID)
	if err != nil {
		return fail(fmt.Errorf("imagecopy: chunk %d: %w", n, err))
	}
	if got.SizeBytes != size || (got.Checksum != "" && got.Checksum != hex.EncodeToString(chunkMD5.Sum(nil))) {
		return fail(fmt.Errorf("%w: chunk %d arrived as %d bytes with MD5 %s, sent %d bytes with MD5 %s",
			ErrChecksum, n, got.SizeBytes, got.Checksum, size, hex.EncodeToString(chunkMD5.Sum(nil))))
	}
	return &converterv1.Chunk{Offset: off, Size: size, Sha256: hex.EncodeToString(chunkSum.Sum(nil)), ImageId: img.ID}, nil
}

// finalOpts is the final image's record: the source's boot properties, and the
// source's ID in SourceProperty.
func finalOpts(src *images.Image, name string) images.CreateOpts {
	props := carried(src)
	props[SourceProperty] = src.ID
	return images.CreateOpts{
		Name: name, DiskFormat: src.DiskFormat, ContainerFormat: src.ContainerFormat,
		MinDisk: src.MinDiskGigabytes, MinRAM: src.MinRAMMegabytes, Properties: props,
		Visibility: ptr(images.ImageVisibilityPrivate), Tags: []string{"hikkoshi"},
	}
}

// sameBytes reports whether Glance's digests of img and src say they hold the same
// bytes: the multihash when both have it in the same algorithm, else the MD5
// checksum; false when neither can tell.
func sameBytes(img, src *images.Image) bool {
	if img.SizeBytes != src.SizeBytes {
		return false
	}
	ga, gv := osHash(img)
	sa, sv := osHash(src)
	if sa != "" && ga == sa {
		return gv == sv
	}
	return src.Checksum != "" && img.Checksum == src.Checksum
}

// earlier looks at the images an earlier attempt of this copy left under its name:
// it returns one that is active and whole, and deletes the others (begun, cut short).
func (c *Copier) earlier(ctx context.Context, src *images.Image, name string) (string, error) {
	list, err := c.Dst.Named(ctx, name)
	if err != nil {
		return "", err
	}
	var whole string
	for _, img := range list {
		if img.Properties[SourceProperty] != src.ID {
			continue // not this copy's
		}
		if whole == "" && img.Status == images.ImageStatusActive && sameBytes(&img, src) {
			whole = img.ID
			continue
		}
		if err := c.Dst.Delete(ctx, img.ID); err != nil {
			return "", err
		}
	}
	return whole, nil
}

// direct streams an image that fits in one chunk straight into the final image:
// no chunk image, no assembly pass. A broken read or upload is tried again from the
// start (one chunk, as the chunked path would); a digest that differs from the
// source's fails with ErrChecksum and leaves no image.
func (c *Copier) direct(ctx context.Context, src *images.Image, name string, p *converterv1.CopyProgress, sum, mh hash.Hash) (string, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		sum.Reset()
		if mh != nil {
			mh.Reset()
		}
		id, err := c.directOnce(ctx, src, name, p, sum, mh)
		if err == nil {
			p.DoneBytes, p.Sha256State, p.OsHashState = p.GetTotalBytes(), snapshot(sum), snapshot(mh)
			if el := time.Since(start).Seconds(); el > 0 {
				p.BytesPerSecond, p.EtaSeconds = int64(float64(p.GetTotalBytes())/el), 0
			}
			if c.Observe != nil {
				c.Observe(p)
			}
			return id, nil
		}
		if errors.Is(err, ErrChecksum) || attempt >= c.Retries || ctx.Err() != nil {
			return "", fmt.Errorf("imagecopy: copy %q: %w", name, err)
		}
	}
}

func (c *Copier) directOnce(ctx context.Context, src *images.Image, name string, p *converterv1.CopyProgress, sum, mh hash.Hash) (string, error) {
	final, err := c.Dst.Create(ctx, finalOpts(src, name))
	if err != nil {
		return "", fmt.Errorf("create image: %w", err)
	}
	fail := func(err error) (string, error) {
		_ = c.Dst.Delete(context.WithoutCancel(ctx), final.ID)
		return "", err
	}
	size := p.GetTotalBytes()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	body, err := newSourceReader(sctx, c.Src, src.ID, 0, size-1, c.Retries, &p.SourceResumes)
	if err != nil {
		return fail(err)
	}
	defer body.Close()
	md := md5.New()
	writers := []io.Writer{md, sum, &counter{p: p}}
	if mh != nil {
		writers = append(writers, mh)
	}
	read, err := upload(ctx, c.Dst, final.ID, io.TeeReader(body, io.MultiWriter(writers...)), stop)
	if err != nil {
		return fail(err)
	}
	if read != size {
		return fail(fmt.Errorf("the source gave %d bytes of %d", read, size))
	}
	got, err := c.Dst.Image(ctx, final.ID)
	if err != nil {
		return fail(err)
	}
	if got.SizeBytes != size || (got.Checksum != "" && got.Checksum != hex.EncodeToString(md.Sum(nil))) {
		return fail(fmt.Errorf("%w: arrived as %d bytes with MD5 %s, sent %d bytes with MD5 %s",
			ErrChecksum, got.SizeBytes, got.Checksum, size, hex.EncodeToString(md.Sum(nil))))
	}
	p.Sha256 = hex.EncodeToString(sum.Sum(nil))
	if _, want := osHash(src); mh != nil && want != "" && hex.EncodeToString(mh.Sum(nil)) != want {
		return fail(fmt.Errorf("%w: the bytes read from image %s have %s %s…, the source says %s…; no image is left",
			ErrChecksum, src.ID, p.GetOsHashAlgo(), hex.EncodeToString(mh.Sum(nil))[:16], want[:min(16, len(want))]))
	}
	if err := sameHash(got, src); err != nil {
		return fail(err)
	}
	return final.ID, nil
}

// sameHash fails with ErrChecksum when Glance's multihash of the copy differs from
// the source's in the same algorithm.
func sameHash(got, src *images.Image) error {
	ga, gv := osHash(got)
	sa, sv := osHash(src)
	if ga != "" && ga == sa && gv != sv {
		return fmt.Errorf("%w: destination %s %s… differs from the source's %s…", ErrChecksum, ga, gv[:min(16, len(gv))], sv[:min(16, len(sv))])
	}
	return nil
}

// assemble streams the chunks, inside the destination, into a new final image and
// checks it against the digests of the source's bytes; the chunks are deleted after.
func (c *Copier) assemble(ctx context.Context, src *images.Image, name string, p *converterv1.CopyProgress) (string, error) {
	f, err := c.openFinal(ctx, src, name)
	if err != nil {
		return "", err
	}
	if err := f.feed(ctx, p.GetChunks()); err != nil {
		f.abort(ctx, err)
		return "", fmt.Errorf("imagecopy: assemble %q: %w", name, err)
	}
	if err := f.finish(ctx, src, p.GetSha256()); err != nil {
		return "", fmt.Errorf("imagecopy: assemble %q: %w", name, err)
	}
	return c.whole(ctx, f.id, p)
}

// whole returns the finished image id after deleting the copy's chunk images.
func (c *Copier) whole(ctx context.Context, id string, p *converterv1.CopyProgress) (string, error) {
	if err := c.Cleanup(ctx, p); err != nil {
		return id, fmt.Errorf("imagecopy: image %s is whole, but deleting its chunk images failed: %w", id, err)
	}
	return id, nil
}

// Cleanup deletes the chunk images recorded in p, and any other chunk image of the
// same copy (one a dead worker had begun and not recorded). The final image is the
// caller's: see Discard.
func (c *Copier) Cleanup(ctx context.Context, p *converterv1.CopyProgress) error {
	var errs []error
	ids := map[string]bool{}
	for _, ch := range p.GetChunks() {
		ids[ch.GetImageId()] = true
	}
	if p.GetImageName() != "" {
		list, err := ChunkImages(ctx, c.Dst, p.GetImageName())
		errs = append(errs, err)
		for _, img := range list {
			ids[img.ID] = true
		}
	}
	for id := range ids {
		errs = append(errs, c.Dst.Delete(ctx, id))
	}
	return errors.Join(errs...)
}

// orphans deletes the chunk images of this copy that p does not record: begun by a
// worker that died before it could record them.
func (c *Copier) orphans(ctx context.Context, p *converterv1.CopyProgress) error {
	list, err := ChunkImages(ctx, c.Dst, p.GetImageName())
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, ch := range p.GetChunks() {
		known[ch.GetImageId()] = true
	}
	for _, img := range list {
		if !known[img.ID] {
			if err := c.Dst.Delete(ctx, img.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

type counter struct{ p *converterv1.CopyProgress }

func (c *counter) Write(b []byte) (int, error) {
	c.p.TransferredBytes += int64(len(b))
	return len(b), nil
}

// upload streams r into image id and returns how many bytes it read. net/http may
// go on reading a request body after the response came (RoundTrip's contract), and
// r feeds the running hashes: so before upload returns, stopSource ends a source
// read still in flight and r is fenced off — nothing reads it, nothing is written
// into the hashes, after upload returned.
func upload(ctx context.Context, g Glance, id string, r io.Reader, stopSource func()) (int64, error) {
	f := &fencedReader{r: r}
	err := g.Upload(ctx, id, f)
	stopSource()
	f.mu.Lock()
	f.fenced = true
	n := f.n
	f.mu.Unlock()
	return n, err
}

var errFenced = errors.New("imagecopy: the upload this body belonged to has returned")

type fencedReader struct {
	mu     sync.Mutex
	r      io.Reader
	n      int64
	fenced bool
}

func (f *fencedReader) Read(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fenced {
		return 0, errFenced
	}
	n, err := f.r.Read(b)
	f.n += int64(n)
	return n, err
}

func ptr[T any](v T) *T { return &v }

// Discard deletes what a copy into name made in Dst: its chunk images and every
// image named name that carries SourceProperty (a final image begun or finished by
// a worker that did not live to record it). For a failed or cancelled job.
func (c *Copier) Discard(ctx context.Context, p *converterv1.CopyProgress) error {
	errs := []error{c.Cleanup(ctx, p)}
	if p.GetImageName() != "" {
		list, err := c.Dst.Named(ctx, p.GetImageName())
		errs = append(errs, err)
		for _, img := range list {
			if _, ours := img.Properties[SourceProperty]; ours {
				errs = append(errs, c.Dst.Delete(ctx, img.ID))
			}
		}
	}
	return errors.Join(errs...)
}
