package imagecopy

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
)

const mib = 1 << 20

func payload(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func setup(t *testing.T, size int) (*fakeGlance, *fakeGlance, string, []byte) {
	src, dst := newFakeGlance(t), newFakeGlance(t)
	data := payload(size)
	id := src.put("db-1-snapshot", data, map[string]any{"hw_disk_bus": "virtio", "os_distro": "centos", "owner_specified.x": "no"})
	return src, dst, id, data
}

func only(t *testing.T, g *fakeGlance) (map[string]any, []byte) {
	t.Helper()
	if g.count() != 1 {
		t.Fatalf("%d images in the destination, want the final one only", g.count())
	}
	for id, img := range g.images {
		return img, g.data[id]
	}
	return nil, nil
}

func TestCopyIsByteIdenticalWithPropertiesAndNoChunksLeft(t *testing.T) {
	src, dst, id, data := setup(t, 10*mib+123)
	var saves int
	c := &Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib, Save: func(context.Context, *converterv1.CopyProgress) error { saves++; return nil }}
	p := &converterv1.CopyProgress{}
	finalID, err := c.Copy(t.Context(), id, "db-1", p)
	if err != nil {
		t.Fatal(err)
	}
	img, got := only(t, dst)
	if img["id"] != finalID || !bytes.Equal(got, data) || img["hw_disk_bus"] != "virtio" || img["os_distro"] != "centos" || img["owner_specified.x"] != nil ||
		img["disk_format"] != "qcow2" || img["os_hash_value"] != src.images[id]["os_hash_value"] {
		t.Fatalf("final image %v (data equal: %v)", img, bytes.Equal(got, data))
	}
	if saves != 11 || len(p.GetChunks()) != 11 || p.GetDoneBytes() != int64(len(data)) || p.GetTransferredBytes() != int64(len(data)) || p.GetSha256() == "" {
		t.Fatalf("progress %v, %d saves", p, saves)
	}
	// Tee: the final image was written alongside the chunks, so no chunk image was
	// read back in the destination for an assembly pass.
	if n := dst.served(); n != 0 {
		t.Fatalf("%d bytes read back from the destination, want none", n)
	}
}

// TestModesGiveTheSameImage: AssembleAfter and Stream give the same image as Tee;
// AssembleAfter reads every chunk back in the destination, Stream makes no chunk
// image at all.
func TestModesGiveTheSameImage(t *testing.T) {
	for _, m := range []Mode{AssembleAfter, Stream} {
		src, dst, id, data := setup(t, 5*mib+7)
		p := &converterv1.CopyProgress{}
		if _, err := (&Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib, Mode: m}).Copy(t.Context(), id, "db-1", p); err != nil {
			t.Fatal(err)
		}
		if _, got := only(t, dst); !bytes.Equal(got, data) {
			t.Fatalf("mode %d: the image differs", m)
		}
		if back, chunks := dst.served(), len(p.GetChunks()); (m == AssembleAfter && (back != int64(len(data)) || chunks != 6)) || (m == Stream && (back != 0 || chunks != 0 || dst.next != 1)) {
			t.Fatalf("mode %d: %d bytes read back in the destination, %d chunks, %d images made", m, back, chunks, dst.next)
		}
	}
}

// TestBrokenUploadsCostOneChunk: the destination breaks a chunk's upload (the chunk
// is sent again; the final image written alongside is dropped and written anew from
// the chunk images already there), and then breaks the final image's upload (the
// chunks go on; the image is assembled from them at the end). Each time the source
// is read once, plus the one broken chunk.
func TestBrokenUploadsCostOneChunk(t *testing.T) {
	for _, broken := range []string{"db-1.part-0002", "db-1"} {
		src, dst, id, data := setup(t, 5*mib)
		once := true
		dst.failPut = func(name string) bool {
			if name == broken && once {
				once = false
				return true
			}
			return false
		}
		p := &converterv1.CopyProgress{}
		if _, err := (&Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib, Retries: 2}).Copy(t.Context(), id, "db-1", p); err != nil {
			t.Fatalf("%s broken: %v", broken, err)
		}
		if _, got := only(t, dst); !bytes.Equal(got, data) {
			t.Fatalf("%s broken: the image differs", broken)
		}
		if read := src.served(); read < 5*mib || read > 6*mib {
			t.Fatalf("%s broken: read %d bytes from the source for 5 MiB, want at most one chunk more", broken, read)
		}
		t.Logf("%s broken: read %d bytes from the source, %d back in the destination", broken, src.served(), dst.served())
	}
}

// TestTakeoverReadsOnlyTheMissingChunks: the first worker dies after 4 chunks (its
// context ends); a second worker, given the recorded progress, reads only the rest.
func TestTakeoverReadsOnlyTheMissingChunks(t *testing.T) {
	src, dst, id, data := setup(t, 10*mib)
	ctx, die := context.WithCancel(t.Context())
	var saved *converterv1.CopyProgress
	first := &Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib, Save: func(_ context.Context, p *converterv1.CopyProgress) error {
		saved = proto.CloneOf(p)
		if len(p.GetChunks()) == 4 {
			die()
		}
		return nil
	}}
	if _, err := first.Copy(ctx, id, "db-1", &converterv1.CopyProgress{}); err == nil {
		t.Fatal("the first worker finished although it died")
	}
	readBefore := src.served()
	p := proto.CloneOf(saved)
	p.TransferredBytes = 0
	second := &Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib}
	if _, err := second.Copy(t.Context(), id, "db-1", p); err != nil {
		t.Fatal(err)
	}
	if read := src.served() - readBefore; read != 6*mib || p.GetTransferredBytes() != 6*mib {
		t.Fatalf("the second worker read %d bytes from the source (counted %d), want the 6 MiB missing", read, p.GetTransferredBytes())
	}
	// The 4 chunks already across went into the new final image from the destination.
	if back := dst.served(); back != 4*mib {
		t.Fatalf("%d bytes read back in the destination, want the 4 MiB already there", back)
	}
	if _, got := only(t, dst); !bytes.Equal(got, data) {
		t.Fatal("the image differs after a takeover")
	}
}

// TestBrokenReadIsRetriedFromTheChunk: a download that breaks mid-chunk goes on
// with a Range request from the byte where it broke, inside the same upload.
func TestBrokenReadIsRetriedFromTheChunk(t *testing.T) {
	src, dst, id, data := setup(t, 5*mib)
	src.breakAt = 2*mib + 300*1024
	c := &Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib, Retries: 2}
	p := &converterv1.CopyProgress{}
	if _, err := c.Copy(t.Context(), id, "db-1", p); err != nil {
		t.Fatal(err)
	}
	// The break costs nothing read twice: the rest of the chunk is asked for by Range.
	if p.GetTransferredBytes() != 5*mib || src.served() != 5*mib || p.GetSourceResumes() != 1 {
		t.Fatalf("transferred %d, served %d, %d resumes; want 5 MiB each and one Range request after the break", p.GetTransferredBytes(), src.served(), p.GetSourceResumes())
	}
	if _, got := only(t, dst); !bytes.Equal(got, data) {
		t.Fatal("the image differs after a retried chunk")
	}
}

// TestCorruptByteFailsAndLeavesNothing: a byte flipped on the way fails the copy
// with ErrChecksum, and the destination holds no image at all.
func TestCorruptByteFailsAndLeavesNothing(t *testing.T) {
	src, dst, id, _ := setup(t, 3*mib)
	src.corruptAt = mib + 17
	c := &Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib}
	_, err := c.Copy(t.Context(), id, "db-1", &converterv1.CopyProgress{})
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if n := dst.count(); n != 0 {
		t.Fatalf("%d images left in the destination", n)
	}
}

// TestOneChunkImageGoesStraightIn: an image no larger than a chunk is streamed into
// the final image alone (one image ever created in the destination: no chunk image,
// no assembly pass), byte-identical, with the source's ID on it.
func TestOneChunkImageGoesStraightIn(t *testing.T) {
	src, dst, id, data := setup(t, 700*1024)
	c := &Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib}
	p := &converterv1.CopyProgress{}
	finalID, err := c.Copy(t.Context(), id, "db-1", p)
	if err != nil {
		t.Fatal(err)
	}
	img, got := only(t, dst)
	if img["id"] != finalID || !bytes.Equal(got, data) || img["hw_disk_bus"] != "virtio" || img[SourceProperty] != id || dst.next != 1 {
		t.Fatalf("final image %v (data equal: %v), %d images created", img, bytes.Equal(got, data), dst.next)
	}
	if p.GetDoneBytes() != int64(len(data)) || p.GetTransferredBytes() != int64(len(data)) || len(p.GetChunks()) != 0 || p.GetSha256() == "" {
		t.Fatalf("progress %v", p)
	}
}

// TestOneChunkImageBrokenReadAndCorruptByte: the straight path goes on by Range
// after a broken connection, and a flipped byte fails with ErrChecksum leaving no image.
func TestOneChunkImageBrokenReadAndCorruptByte(t *testing.T) {
	src, dst, id, data := setup(t, 900*1024)
	src.breakAt = 300 * 1024
	c := &Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib, Retries: 2}
	p := &converterv1.CopyProgress{}
	if _, err := c.Copy(t.Context(), id, "db-1", p); err != nil {
		t.Fatal(err)
	}
	if _, got := only(t, dst); !bytes.Equal(got, data) || p.GetTransferredBytes() != 900*1024 || p.GetSourceResumes() != 1 {
		t.Fatalf("after a break: equal %v, transferred %d, %d resumes (want 900 KiB read once, one Range request)", bytes.Equal(got, data), p.GetTransferredBytes(), p.GetSourceResumes())
	}
	src2, dst2, id2, _ := setup(t, 900*1024)
	src2.corruptAt = 4242
	_, err := (&Copier{Src: src2.client(), Dst: dst2.client(), ChunkSize: mib, Retries: 2}).Copy(t.Context(), id2, "db-1", &converterv1.CopyProgress{})
	if !errors.Is(err, ErrChecksum) || dst2.count() != 0 {
		t.Fatalf("a flipped byte: %v, %d images left", err, dst2.count())
	}
}

// TestTakeoverFindsTheFinalImage: a worker that died after the final image was whole
// but before it was recorded — the next one takes that image and reads nothing from
// the source; one that died while the final image was being written — the next one
// deletes it and makes one whole image. Either way one image is left.
func TestTakeoverFindsTheFinalImage(t *testing.T) {
	src, dst, id, _ := setup(t, 3*mib)
	var saved *converterv1.CopyProgress
	c := &Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib, Save: func(_ context.Context, p *converterv1.CopyProgress) error {
		saved = proto.CloneOf(p)
		return nil
	}}
	finalID, err := c.Copy(t.Context(), id, "db-1", &converterv1.CopyProgress{})
	if err != nil {
		t.Fatal(err)
	}
	// The record as the last chunk left it: the chunks (deleted since) and no image.
	readBefore := src.served()
	p := proto.CloneOf(saved)
	again, err := (&Copier{Src: src.client(), Dst: dst.client(), ChunkSize: mib}).Copy(t.Context(), id, "db-1", p)
	if err != nil || again != finalID || src.served() != readBefore || p.GetSha256() == "" {
		t.Fatalf("takeover after the image was whole: %s, %v (want %s), read %d bytes again, sha256 %q", again, err, finalID, src.served()-readBefore, p.GetSha256())
	}
	only(t, dst)

	// A final image begun and never finished (queued, no data), and one of the same
	// name that is not this copy's (no SourceProperty): the first is deleted, the
	// second left alone.
	src2, dst2, id2, data2 := setup(t, 3*mib)
	dst2.mu.Lock()
	dst2.images["begun"] = map[string]any{"id": "begun", "name": "db-1", "status": "saving", SourceProperty: id2}
	dst2.images["theirs"] = map[string]any{"id": "theirs", "name": "db-1", "status": "active"}
	dst2.mu.Unlock()
	finalID, err = (&Copier{Src: src2.client(), Dst: dst2.client(), ChunkSize: mib}).Copy(t.Context(), id2, "db-1", &converterv1.CopyProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if dst2.count() != 2 || dst2.images["begun"] != nil || dst2.images["theirs"] == nil || !bytes.Equal(dst2.data[finalID], data2) {
		t.Fatalf("destination after a takeover over a begun image: %v", dst2.images)
	}
	// Discard (a cancelled job) deletes this copy's image even unrecorded, not theirs.
	if err := (&Copier{Dst: dst2.client()}).Discard(t.Context(), &converterv1.CopyProgress{ImageName: "db-1"}); err != nil {
		t.Fatal(err)
	}
	if dst2.count() != 1 || dst2.images["theirs"] == nil {
		t.Fatalf("after Discard: %v", dst2.images)
	}
}
