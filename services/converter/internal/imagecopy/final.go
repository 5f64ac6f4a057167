package imagecopy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
)

// errUploadEnded stops a writer still feeding an upload that has returned.
var errUploadEnded = errors.New("imagecopy: the final image's upload ended")

// finalStream is the final image being written while its bytes arrive: one PUT fed
// through a pipe, first with the chunks a copy taken over finds in the destination
// (read back there), then with each new chunk's bytes as they are read from the
// source (the tee), so that assembling costs no pass of its own.
//
// As a writer it never fails: a broken final upload must not break the chunk upload
// beside it (the chunk is what a retry or a takeover goes on from). The first error
// is kept, the bytes after it are dropped, and the copy falls back to assembling
// from the chunk images.
type finalStream struct {
	g    Glance
	id   string
	pw   *io.PipeWriter
	sum  hash.Hash // SHA-256 of the bytes written
	n    int64
	done chan error // the upload's result
	err  error
}

// openFinal creates the final image and starts its upload.
func (c *Copier) openFinal(ctx context.Context, src *images.Image, name string) (*finalStream, error) {
	img, err := c.Dst.Create(ctx, finalOpts(src, name))
	if err != nil {
		return nil, fmt.Errorf("imagecopy: create image %q: %w", name, err)
	}
	pr, pw := io.Pipe()
	f := &finalStream{g: c.Dst, id: img.ID, pw: pw, sum: sha256.New(), done: make(chan error, 1)}
	go func() {
		err := c.Dst.Upload(ctx, img.ID, pr)
		_ = pr.CloseWithError(errUploadEnded) // a writer still feeding stops
		f.done <- err
	}()
	return f, nil
}

func (f *finalStream) Write(b []byte) (int, error) {
	if f.err == nil {
		if _, err := f.pw.Write(b); err != nil {
			f.err = err
		} else {
			f.sum.Write(b)
			f.n += int64(len(b))
		}
	}
	return len(b), nil
}

// feed writes chunks already in the destination into the stream, each checked
// against its recorded SHA-256 on the way.
func (f *finalStream) feed(ctx context.Context, chunks []*converterv1.Chunk) error {
	for _, ch := range chunks {
		if f.n != ch.GetOffset() {
			return fmt.Errorf("imagecopy: chunk at byte %d follows %d bytes", ch.GetOffset(), f.n)
		}
		body, err := f.g.Download(ctx, ch.GetImageId(), 0, -1)
		if err != nil {
			return fmt.Errorf("imagecopy: read chunk image %s: %w", ch.GetImageId(), err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), body)
		_ = body.Close()
		if err == nil && (n != ch.GetSize() || hex.EncodeToString(h.Sum(nil)) != ch.GetSha256()) {
			err = fmt.Errorf("%w: chunk image %s changed in the destination (%d bytes, SHA-256 %s)", ErrChecksum, ch.GetImageId(), n, hex.EncodeToString(h.Sum(nil)))
		}
		if err == nil {
			err = f.err
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// finish ends the upload and checks the image holds exactly the source's bytes:
// their SHA-256 (sha, hex) as written, and Glance's own size and multihash of what
// it stored against the source's.
func (f *finalStream) finish(ctx context.Context, src *images.Image, sha string) error {
	_ = f.pw.Close()
	err := <-f.done
	if err == nil {
		err = f.err
	}
	if err == nil && hex.EncodeToString(f.sum.Sum(nil)) != sha {
		err = fmt.Errorf("%w: the final image's SHA-256 differs from the source bytes'", ErrChecksum)
	}
	if err == nil {
		var got *images.Image
		if got, err = f.g.Image(ctx, f.id); err == nil {
			if got.SizeBytes != src.SizeBytes {
				err = fmt.Errorf("%w: the final image holds %d bytes, the source %d", ErrChecksum, got.SizeBytes, src.SizeBytes)
			} else {
				err = sameHash(got, src)
			}
		}
	}
	if err != nil {
		_ = f.g.Delete(context.WithoutCancel(ctx), f.id)
	}
	return err
}

// abort ends the upload unfinished and deletes the image.
func (f *finalStream) abort(ctx context.Context, cause error) {
	_ = f.pw.CloseWithError(cause)
	<-f.done
	_ = f.g.Delete(context.WithoutCancel(ctx), f.id)
}
