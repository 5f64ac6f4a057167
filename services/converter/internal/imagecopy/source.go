package imagecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/poll"
)

// sourceReader reads bytes from..to (inclusive) of a source image and, when the
// connection breaks, asks again with a Range request for the bytes not yet read, up
// to retries times: a broken source read costs only what was in flight, inside the
// same chunk and the same upload. It fails only when the source cannot be read
// again, or when the context ends.
type sourceReader struct {
	ctx     context.Context
	g       Glance
	id      string
	pos     int64 // next byte to read
	to      int64 // last byte wanted
	rc      io.ReadCloser
	retries int
	resumes *int32 // counts the Range requests made after a break (may be nil)
}

func newSourceReader(ctx context.Context, g Glance, id string, from, to int64, retries int, resumes *int32) (*sourceReader, error) {
	r := &sourceReader{ctx: ctx, g: g, id: id, pos: from, to: to, retries: retries, resumes: resumes}
	if from > to {
		return r, nil
	}
	rc, err := g.Download(ctx, id, from, to)
	if err != nil {
		return nil, fmt.Errorf("read bytes %d-%d of image %s: %w", from, to, id, err)
	}
	r.rc = rc
	return r, nil
}

func (r *sourceReader) Read(b []byte) (int, error) {
	if r.pos > r.to {
		return 0, io.EOF
	}
	if int64(len(b)) > r.to-r.pos+1 {
		b = b[:r.to-r.pos+1]
	}
	for {
		n, err := r.rc.Read(b)
		r.pos += int64(n)
		if r.pos > r.to {
			return n, nil // all wanted; the next Read says EOF
		}
		if err == nil {
			return n, nil
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the body ended short of what was asked for
		}
		if n > 0 {
			// Hand over what arrived; the break shows again on the next Read.
			return n, nil
		}
		if rerr := r.reopen(err); rerr != nil {
			return 0, rerr
		}
	}
}

// reopenBackoff paces the Range requests after a break: the first at once (a reset
// is usually over), the next ones further apart.
var reopenBackoff = poll.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Factor: 2, Jitter: 0.2}

// reopen asks the source again for the bytes from r.pos on, after err broke the read.
func (r *sourceReader) reopen(cause error) error {
	_ = r.rc.Close()
	return poll.Until(r.ctx, reopenBackoff, func(int) (bool, error) {
		if r.retries <= 0 {
			return false, fmt.Errorf("read image %s at byte %d: %w", r.id, r.pos, cause)
		}
		r.retries--
		if r.resumes != nil {
			*r.resumes++
		}
		rc, err := r.g.Download(r.ctx, r.id, r.pos, r.to)
		if err != nil {
			cause = err
			return false, nil
		}
		r.rc = rc
		return true, nil
	})
}

func (r *sourceReader) Close() error {
	if r.rc == nil {
		return nil
	}
	return r.rc.Close()
}
