package imagecopy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"golang.org/x/sync/semaphore"
	"google.golang.org/protobuf/types/known/timestamppb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
)

// Warm pre-copy. A running server's disk is copied in rounds: each round reads a
// snapshot whole, cuts it into pieces by their content (Chunking: the same bytes
// give the same pieces wherever a change shifted them), and sends across only the
// pieces the destination does not hold yet, packed into pack images (the chunk
// store: hidden images tagged PackTag, 64 MiB each at most); a manifest (a hidden
// image tagged ManifestTag) lists the snapshot's pieces in order and where each
// is. The rounds before the cut-over run while the server does; the cut-over's
// round (server stopped, final snapshot: CutOver) sends only what changed since,
// and the final image is assembled in the destination from the packs and those
// pieces at once, checked piece by piece and against the final snapshot's digests.
//
// Where the parts run: a round reads the source whole and sends little, so it
// belongs near the source; the assembly reads and writes the destination only, so
// it belongs near the destination (Assembler). Run in one process, the one the
// job's worker runs, the bytes of the assembly cross the link twice if that
// worker is not near the destination.

// Tags of a warm copy's images in the destination.
const (
	PackTag     = "hikkoshi-pack"
	ManifestTag = "hikkoshi-manifest"
)

// cutOverInFlight bounds the bytes of new pieces a cut-over holds in memory
// between the round and the assembly.
const cutOverInFlight = 32 << 20

// DefaultPackBytes is the most one pack image holds.
const DefaultPackBytes = 64 << 20

// Warm copies a server's snapshots in rounds.
type Warm struct {
	// Src is the source cloud's Glance; each round reads a snapshot from it whole.
	Src Glance
	// Dst is the destination's Glance as a round reaches it: packs and manifests
	// are written there.
	Dst Glance
	// Assembler is the destination's Glance as the assembly reaches it (a client
	// near it); nil: Dst.
	Assembler Glance
	// PackBytes is the most one pack holds (0: DefaultPackBytes).
	PackBytes int64
	// Retries is how many times a broken source read asks again by Range.
	Retries int
	// Save records the progress after each round.
	Save func(context.Context, *converterv1.WarmProgress) error
}

func (w *Warm) assembler() Glance {
	if w.Assembler != nil {
		return w.Assembler
	}
	return w.Dst
}

// averageBitsFor chooses the pieces' average size for an image of size bytes:
// 64 KiB (which finds the most again: BenchmarkChunkReuse), larger for images so
// large that the store's index (one entry per piece, in memory) would pass ~64k
// pieces; at most 4 MiB.
func averageBitsFor(size int64) int32 {
	b := int32(16)
	for b < 22 && size>>b > 1<<16 {
		b++
	}
	return b
}

func chunkingFor(avgBits int32) Chunking {
	avg := uint(1) << avgBits
	return Chunking{AverageBits: int(avgBits), Min: avg / 4, Max: avg * 8}
}

// location is where a piece is in the store.
type location struct {
	pack int
	off  int64
	size int64
}

// manifest is a snapshot's pieces in order: digest, size, pack, offset.
type manifest struct {
	digests [][32]byte
	locs    []location
}

const manifestMagic = "HKMF1\n"

func (m *manifest) encode() []byte {
	var b bytes.Buffer
	b.WriteString(manifestMagic)
	var v [binary.MaxVarintLen64]byte
	for i, d := range m.digests {
		b.Write(d[:])
		for _, x := range []uint64{uint64(m.locs[i].size), uint64(m.locs[i].pack), uint64(m.locs[i].off)} {
			b.Write(v[:binary.PutUvarint(v[:], x)])
		}
	}
	return b.Bytes()
}

func decodeManifest(r io.Reader, packs int) (*manifest, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(manifestMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != manifestMagic {
		return nil, fmt.Errorf("not a manifest (%v)", err)
	}
	m := &manifest{}
	for {
		var d [32]byte
		if _, err := io.ReadFull(br, d[:]); errors.Is(err, io.EOF) {
			return m, nil
		} else if err != nil {
			return nil, err
		}
		var x [3]uint64
		for i := range x {
			v, err := binary.ReadUvarint(br)
			if err != nil {
				return nil, err
			}
			x[i] = v
		}
		if x[1] >= uint64(packs) || x[0] == 0 || x[0] > 1<<30 {
			return nil, fmt.Errorf("piece %d: pack %d of %d, size %d", len(m.digests), x[1], packs, x[0])
		}
		m.digests = append(m.digests, d)
		m.locs = append(m.locs, location{pack: int(x[1]), size: int64(x[0]), off: int64(x[2])})
	}
}

// pack is a pack image being written: one upload fed through a pipe.
type pack struct {
	id   string
	pw   *io.PipeWriter
	md   hash.Hash
	n    int64
	done chan error
}

func (w *Warm) openPack(ctx context.Context, name string) (*pack, error) {
	img, err := w.Dst.Create(ctx, images.CreateOpts{Name: name, DiskFormat: "raw", ContainerFormat: "bare",
		Visibility: ptr(images.ImageVisibilityPrivate), Tags: []string{PackTag}, Hidden: ptr(true)})
	if err != nil {
		return nil, fmt.Errorf("imagecopy: create pack %s: %w", name, err)
	}
	pr, pw := io.Pipe()
	pk := &pack{id: img.ID, pw: pw, md: md5.New(), done: make(chan error, 1)}
	go func() {
		err := w.Dst.Upload(ctx, img.ID, pr)
		_ = pr.CloseWithError(errUploadEnded)
		pk.done <- err
	}()
	return pk, nil
}

func (pk *pack) write(b []byte) error {
	if _, err := pk.pw.Write(b); err != nil {
		return err
	}
	pk.md.Write(b)
	pk.n += int64(len(b))
	return nil
}

// close ends the upload and checks Glance holds what was written.
func (pk *pack) close(ctx context.Context, g Glance) error {
	_ = pk.pw.Close()
	if err := <-pk.done; err != nil {
		return fmt.Errorf("imagecopy: upload pack %s: %w", pk.id, err)
	}
	got, err := g.Image(ctx, pk.id)
	if err != nil {
		return fmt.Errorf("imagecopy: pack %s: %w", pk.id, err)
	}
	if got.SizeBytes != pk.n || (got.Checksum != "" && got.Checksum != hex.EncodeToString(pk.md.Sum(nil))) {
		return fmt.Errorf("%w: pack %s arrived as %d bytes with MD5 %s, sent %d bytes", ErrChecksum, pk.id, got.SizeBytes, got.Checksum, pk.n)
	}
	return nil
}

func (pk *pack) abort(cause error) {
	_ = pk.pw.CloseWithError(cause)
	<-pk.done
}

// store loads the pieces the rounds so far sent: every round's manifest.
func (w *Warm) store(ctx context.Context, p *converterv1.WarmProgress) (map[[32]byte]location, error) {
	out := map[[32]byte]location{}
	for _, r := range p.GetRounds() {
		m, err := w.readManifest(ctx, r, len(p.GetPackImageIds()))
		if err != nil {
			return nil, err
		}
		for i, d := range m.digests {
			out[d] = m.locs[i]
		}
	}
	return out, nil
}

func (w *Warm) readManifest(ctx context.Context, r *converterv1.WarmRound, packs int) (*manifest, error) {
	body, err := w.Dst.Download(ctx, r.GetManifestImageId(), 0, -1)
	if err != nil {
		return nil, fmt.Errorf("imagecopy: read manifest %s: %w", r.GetManifestImageId(), err)
	}
	defer body.Close()
	m, err := decodeManifest(body, packs)
	if err != nil {
		return nil, fmt.Errorf("imagecopy: manifest %s: %w", r.GetManifestImageId(), err)
	}
	return m, nil
}

// snapshot reads snapshot snapID's record, which must be active; the first round
// chooses the pieces' size from it.
func (w *Warm) snapshot(ctx context.Context, snapID string, p *converterv1.WarmProgress) (*images.Image, error) {
	snap, err := w.Src.Image(ctx, snapID)
	if err != nil {
		return nil, fmt.Errorf("imagecopy: snapshot %s: %w", snapID, err)
	}
	if snap.Status != images.ImageStatusActive {
		return nil, fmt.Errorf("imagecopy: snapshot %s is %s, not active", snapID, snap.Status)
	}
	if p.GetAverageBits() == 0 {
		p.AverageBits = averageBitsFor(snap.SizeBytes)
	}
	return snap, nil
}

// cut reads snapshot snap whole and calls fn with each piece and its SHA-256, in
// order, counting round's pieces and bytes read; then it checks what it read
// against the snapshot's size and multihash, and sets round's SHA-256.
func (w *Warm) cut(ctx context.Context, snap *images.Image, p *converterv1.WarmProgress, round *converterv1.WarmRound, fn func(d [32]byte, piece []byte) error) error {
	body, err := newSourceReader(ctx, w.Src, snap.ID, 0, snap.SizeBytes-1, w.Retries, nil)
	if err != nil {
		return fmt.Errorf("imagecopy: %w", err)
	}
	defer body.Close()
	sum := sha256.New()
	mh, err := newMultihash(osHashAlgo(snap))
	if err != nil {
		return err
	}
	hw := io.MultiWriter(sum, &countWriter{n: &round.BytesRead})
	if mh != nil {
		hw = io.MultiWriter(hw, mh)
	}
	if err := chunkingFor(p.GetAverageBits()).Cut(io.TeeReader(body, hw), func(piece []byte) error {
		round.Pieces++
		return fn(sha256.Sum256(piece), piece)
	}); err != nil {
		return err
	}
	if round.GetBytesRead() != snap.SizeBytes {
		return fmt.Errorf("imagecopy: snapshot %s gave %d bytes of %d", snap.ID, round.GetBytesRead(), snap.SizeBytes)
	}
	if _, want := osHash(snap); mh != nil && want != "" && hex.EncodeToString(mh.Sum(nil)) != want {
		return fmt.Errorf("%w: the bytes read from snapshot %s differ from its %s", ErrChecksum, snap.ID, osHashAlgo(snap))
	}
	round.Sha256 = hex.EncodeToString(sum.Sum(nil))
	return nil
}

// Round, a pre-copy round, reads snapshot snapID whole, sends the pieces the store
// does not hold and records the round. On an error the round's packs are deleted
// and nothing is recorded: the round is run again.
func (w *Warm) Round(ctx context.Context, snapID string, p *converterv1.WarmProgress) (*converterv1.WarmRound, error) {
	src, err := w.snapshot(ctx, snapID, p)
	if err != nil {
		return nil, err
	}
	if err := w.orphans(ctx, p); err != nil {
		return nil, err
	}
	store, err := w.store(ctx, p)
	if err != nil {
		return nil, err
	}
	round := &converterv1.WarmRound{SnapshotImageId: snapID, StartTime: timestamppb.Now()}
	n := len(p.GetRounds())
	packsBefore := len(p.GetPackImageIds())
	maxPack := w.PackBytes
	if maxPack <= 0 {
		maxPack = DefaultPackBytes
	}
	var cur *pack
	fail := func(err error) (*converterv1.WarmRound, error) {
		if cur != nil {
			cur.abort(err)
		}
		for _, id := range p.GetPackImageIds()[packsBefore:] {
			_ = w.Dst.Delete(context.WithoutCancel(ctx), id)
		}
		p.PackImageIds = p.PackImageIds[:packsBefore]
		return nil, err
	}
	m := &manifest{}
	err = w.cut(ctx, src, p, round, func(d [32]byte, piece []byte) error {
		size := int64(len(piece))
		if loc, ok := store[d]; ok {
			round.BytesFound += size
			round.PiecesFound++
			m.digests, m.locs = append(m.digests, d), append(m.locs, loc)
			return nil
		}
		if cur != nil && cur.n+size > maxPack {
			if err := cur.close(ctx, w.Dst); err != nil {
				return err
			}
			cur = nil
		}
		if cur == nil {
			name := fmt.Sprintf("%s.pack-r%02d-%04d", p.GetImageName(), n, len(p.GetPackImageIds())-packsBefore)
			if cur, err = w.openPack(ctx, name); err != nil {
				return err
			}
			p.PackImageIds = append(p.PackImageIds, cur.id)
		}
		loc := location{pack: len(p.GetPackImageIds()) - 1, off: cur.n, size: size}
		if err := cur.write(piece); err != nil {
			return fmt.Errorf("imagecopy: write pack %s: %w", cur.id, err)
		}
		round.BytesSent += size
		store[d] = loc
		m.digests, m.locs = append(m.digests, d), append(m.locs, loc)
		return nil
	})
	if err == nil && cur != nil {
		err = cur.close(ctx, w.Dst)
		cur = nil
	}
	if err != nil {
		return fail(err)
	}
	mimg, err := w.Dst.Create(ctx, images.CreateOpts{Name: fmt.Sprintf("%s.manifest-r%02d", p.GetImageName(), n), DiskFormat: "raw", ContainerFormat: "bare",
		Visibility: ptr(images.ImageVisibilityPrivate), Tags: []string{ManifestTag}, Hidden: ptr(true)})
	if err != nil {
		return fail(fmt.Errorf("imagecopy: create manifest: %w", err))
	}
	if err := w.Dst.Upload(ctx, mimg.ID, bytes.NewReader(m.encode())); err != nil {
		_ = w.Dst.Delete(context.WithoutCancel(ctx), mimg.ID)
		return fail(fmt.Errorf("imagecopy: upload manifest: %w", err))
	}
	round.ManifestImageId = mimg.ID
	round.EndTime = timestamppb.Now()
	p.Rounds = append(p.Rounds, round)
	if w.Save != nil {
		if err := w.Save(ctx, p); err != nil {
			return nil, fmt.Errorf("imagecopy: record round %d: %w", n, err)
		}
	}
	return round, nil
}

func osHashAlgo(img *images.Image) string { a, _ := osHash(img); return a }

type countWriter struct{ n *int64 }

func (c *countWriter) Write(b []byte) (int, error) { *c.n += int64(len(b)); return len(b), nil }

// orphans deletes the packs and manifests of this copy that p does not record: a
// round cut short by a worker's death.
func (w *Warm) orphans(ctx context.Context, p *converterv1.WarmProgress) error {
	known := map[string]bool{}
	for _, id := range p.GetPackImageIds() {
		known[id] = true
	}
	for _, r := range p.GetRounds() {
		known[r.GetManifestImageId()] = true
	}
	list, err := w.leftovers(ctx, p.GetImageName())
	if err != nil {
		return err
	}
	for _, img := range list {
		if !known[img.ID] {
			if err := w.Dst.Delete(ctx, img.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// leftovers lists the packs and manifests named after the copy's image.
func (w *Warm) leftovers(ctx context.Context, name string) ([]images.Image, error) {
	var out []images.Image
	for _, tag := range []string{PackTag, ManifestTag} {
		list, err := w.Dst.Tagged(ctx, tag)
		if err != nil {
			return nil, err
		}
		for _, img := range list {
			if name != "" && (strings.HasPrefix(img.Name, name+".pack-") || strings.HasPrefix(img.Name, name+".manifest-")) {
				out = append(out, img)
			}
		}
	}
	return out, nil
}

// packReader reads pieces from packs. It keeps one open read per pack and goes on
// reading it forward: the pieces of one pack come in order with small gaps (the
// pieces a later round replaced), which it reads past rather than ask again; a
// piece behind the read, or far ahead of it, is asked for with a new Range request.
// So an assembly makes about one request per pack, not one per run of pieces.
type packReader struct {
	ctx     context.Context
	g       Glance
	packs   []string
	end     map[int]int64 // the last byte of each pack that will be read
	open    map[int]*cursor
	retries int
	buf     []byte
}

type cursor struct {
	body *sourceReader
	pos  int64
}

// skipBytes is the largest gap a packReader reads past rather than ask again.
const skipBytes = 4 << 20

func newPackReader(ctx context.Context, g Glance, packs []string, locs []location, retries int) *packReader {
	end := map[int]int64{}
	for _, loc := range locs {
		end[loc.pack] = max(end[loc.pack], loc.off+loc.size-1)
	}
	return &packReader{ctx: ctx, g: g, packs: packs, end: end, open: map[int]*cursor{}, retries: retries}
}

// read returns the piece at loc, checked against digest; the slice is reused by
// the next read.
func (r *packReader) read(loc location, digest [32]byte) ([]byte, error) {
	c := r.open[loc.pack]
	if c != nil && (loc.off < c.pos || loc.off-c.pos > skipBytes) {
		_ = c.body.Close()
		c = nil
	}
	if c == nil {
		body, err := newSourceReader(r.ctx, r.g, r.packs[loc.pack], loc.off, r.end[loc.pack], r.retries, nil)
		if err != nil {
			return nil, err
		}
		c = &cursor{body: body, pos: loc.off}
		r.open[loc.pack] = c
	}
	if gap := loc.off - c.pos; gap > 0 {
		if _, err := io.CopyN(io.Discard, c.body, gap); err != nil {
			return nil, fmt.Errorf("read pack %s: %w", r.packs[loc.pack], err)
		}
	}
	if int64(cap(r.buf)) < loc.size {
		r.buf = make([]byte, loc.size)
	}
	piece := r.buf[:loc.size]
	if _, err := io.ReadFull(c.body, piece); err != nil {
		return nil, fmt.Errorf("read a piece at byte %d of pack %s: %w", loc.off, r.packs[loc.pack], err)
	}
	c.pos = loc.off + loc.size
	if sha256.Sum256(piece) != digest {
		return nil, fmt.Errorf("%w: the piece at byte %d of pack %s changed in the destination", ErrChecksum, loc.off, r.packs[loc.pack])
	}
	return piece, nil
}

func (r *packReader) close() {
	for _, c := range r.open {
		_ = c.body.Close()
	}
}

// Discard deletes what a warm copy keeps in the destination: its packs and
// manifests (the final image is Copier.Discard's).
func (w *Warm) Discard(ctx context.Context, p *converterv1.WarmProgress) error {
	ids := map[string]bool{}
	for _, id := range p.GetPackImageIds() {
		ids[id] = true
	}
	for _, r := range p.GetRounds() {
		ids[r.GetManifestImageId()] = true
	}
	list, err := w.leftovers(ctx, p.GetImageName())
	errs := []error{err}
	for _, img := range list {
		ids[img.ID] = true
	}
	for id := range ids {
		if id != "" {
			errs = append(errs, w.Dst.Delete(ctx, id))
		}
	}
	return errors.Join(errs...)
}

// CutOver is the cut-over's round and the assembly at once: the final snapshot
// snapID is read whole and cut; each piece the store holds is read from its pack
// in the destination, each it does not is handed across the link to the assembly
// as it is cut, and both go into the final image named name in the order of the
// snapshot — so the downtime's copy is about the time to read the snapshot, not
// that plus an assembly pass. The new pieces are not kept in a pack: a cut-over cut
// short is run again whole (its snapshot stays). The round is recorded once the
// image is whole (no manifest: nothing comes after it), and the store is deleted.
//
// Run in one process, the hand-over is in memory and the link (Dst, when a Link)
// is waited on for each new piece's bytes, as if it crossed to an assembly near
// the destination.
func (w *Warm) CutOver(ctx context.Context, snapID, name string, p *converterv1.WarmProgress) (string, error) {
	snap, err := w.snapshot(ctx, snapID, p)
	if err != nil {
		return "", err
	}
	g := w.assembler()
	c := &Copier{Dst: g}
	if done, err := c.earlier(ctx, snap, name); err != nil || done != "" {
		// A worker that died after the image was whole and before it was recorded.
		if err == nil {
			err = w.Discard(ctx, p)
		}
		return done, err
	}
	store, err := w.store(ctx, p)
	if err != nil {
		return "", err
	}
	round := &converterv1.WarmRound{SnapshotImageId: snapID, Final: true, StartTime: timestamppb.Now()}
	f, err := c.openFinal(ctx, snap, name)
	if err != nil {
		return "", err
	}
	// Three stages, so that reading the snapshot, crossing the link and writing
	// the image overlap: the round cuts and sends every piece to the assembly in
	// order (found ones as a location, new ones with their bytes, at most
	// cutOverInFlight of those held at once); the link carries the new pieces in
	// order, as fast as it goes, ahead of the assembly; the assembly writes each
	// piece, found ones read from their packs, new ones once they have crossed.
	type item struct {
		digest  [32]byte
		loc     location
		data    []byte        // a new piece's bytes (nil: found, at loc)
		arrived chan struct{} // closed when a new piece has crossed the link
	}
	items := make(chan item, 1<<16)
	crossing := make(chan item, 1<<16)
	budget := semaphore.NewWeighted(cutOverInFlight)
	actx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for it := range crossing {
			if waitLink(actx, w.Dst, len(it.data)) != nil {
				return // the cut-over is ending; the assembly stops on actx
			}
			close(it.arrived)
		}
	}()
	assembled := make(chan error, 1)
	go func() {
		var locs []location
		for _, l := range store {
			locs = append(locs, l)
		}
		pr := newPackReader(actx, g, p.GetPackImageIds(), locs, w.Retries)
		defer pr.close()
		fault := func(err error) {
			assembled <- err
			stop() // the round stops feeding
			for it := range items {
				if it.data != nil {
					budget.Release(int64(len(it.data)))
				}
			}
		}
		for it := range items {
			piece := it.data
			if piece == nil {
				var rerr error
				if piece, rerr = pr.read(it.loc, it.digest); rerr != nil {
					fault(rerr)
					return
				}
			} else {
				select {
				case <-it.arrived:
				case <-actx.Done():
					budget.Release(int64(len(it.data)))
					fault(actx.Err())
					return
				}
			}
			_, _ = f.Write(piece)
			if it.data != nil {
				budget.Release(int64(len(it.data)))
			}
		}
		assembled <- f.err
	}()
	fail := func(err error) (string, error) {
		f.abort(ctx, err)
		return "", fmt.Errorf("imagecopy: cut-over of %q: %w", name, err)
	}
	cutErr := w.cut(actx, snap, p, round, func(d [32]byte, piece []byte) error {
		size := int64(len(piece))
		it := item{digest: d}
		if loc, ok := store[d]; ok {
			round.BytesFound += size
			round.PiecesFound++
			it.loc = loc
		} else {
			if err := budget.Acquire(actx, size); err != nil {
				return err
			}
			round.BytesSent += size
			it.data, it.arrived = bytes.Clone(piece), make(chan struct{})
			crossing <- it // never full: it holds no more than items
		}
		items <- it // never full: 1<<16 pieces are more than the budget lets wait
		return nil
	})
	close(items)
	close(crossing)
	if aerr := <-assembled; aerr != nil {
		return fail(aerr) // the assembly's error says more than the round's "cancelled"
	}
	if cutErr != nil {
		return fail(cutErr)
	}
	if err := f.finish(ctx, snap, round.GetSha256()); err != nil {
		return "", fmt.Errorf("imagecopy: cut-over of %q: %w", name, err)
	}
	round.EndTime = timestamppb.Now()
	p.Rounds = append(p.Rounds, round)
	if w.Save != nil {
		if err := w.Save(ctx, p); err != nil {
			return f.id, fmt.Errorf("imagecopy: record the cut-over's round: %w", err)
		}
	}
	if err := w.Discard(ctx, p); err != nil {
		return f.id, fmt.Errorf("imagecopy: image %s is whole, but deleting its packs failed: %w", f.id, err)
	}
	return f.id, nil
}
