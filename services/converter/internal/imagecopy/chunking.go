package imagecopy

import (
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Chunking is how a warm copy cuts an image into the pieces it finds again in
// later rounds.
//
// Fixed offsets find little: a snapshot image is written afresh each time (qemu-img
// lays a qcow2's clusters out in guest order, skipping what is zero), so one
// cluster allocated early in the disk shifts every byte after it. Content-defined
// chunking (a rolling Rabin fingerprint, restic's chunker) cuts where the content
// says, so the pieces after a change are the same pieces, shifted. Measured
// (BenchmarkChunkReuse: a 1 GiB disk, 600 MiB of data, ~2% of it changed between
// two qcow2 snapshots): see docs/benchmarks.md.
type Chunking struct {
	// Fixed, when > 0, cuts pieces of Fixed bytes at fixed offsets (measurement
	// only: a piece is held in memory whole).
	Fixed int
	// AverageBits sets the content-defined pieces' average size, 2^AverageBits
	// bytes; Min and Max bound them.
	AverageBits int
	Min, Max    uint
}

// DefaultChunking is content-defined with 1 MiB pieces on average (512 KiB to
// 8 MiB): restic's defaults.
var DefaultChunking = Chunking{AverageBits: 20, Min: chunker.MinSize, Max: chunker.MaxSize}

// Polynomial is the Rabin polynomial every round and every worker cuts with: the
// same bytes must give the same pieces wherever and whenever they are cut. It is
// irreducible (TestPolynomialIsIrreducible).
const Polynomial = chunker.Pol(0x3DA3358B4DC173)

// maxPiece is the most a piece can hold.
func (c Chunking) maxPiece() int {
	if c.Fixed > 0 {
		return c.Fixed
	}
	return int(c.Max)
}

// Cut reads r to its end and calls fn with each piece in order; the slice is
// reused after fn returns. It holds at most one piece in memory.
func (c Chunking) Cut(r io.Reader, fn func(piece []byte) error) error {
	if c.Fixed > 0 {
		buf := make([]byte, c.Fixed)
		for {
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				if ferr := fn(buf[:n]); ferr != nil {
					return ferr
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	if c.Max == 0 || c.Min == 0 || c.Min > c.Max || c.AverageBits <= 0 {
		return fmt.Errorf("imagecopy: chunking %+v: give Fixed, or AverageBits with 0 < Min <= Max", c)
	}
	ch := chunker.NewWithBoundaries(r, Polynomial, c.Min, c.Max)
	ch.SetAverageBits(c.AverageBits)
	buf := make([]byte, c.Max)
	for {
		piece, err := ch.Next(buf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(piece.Data); err != nil {
			return err
		}
	}
}
