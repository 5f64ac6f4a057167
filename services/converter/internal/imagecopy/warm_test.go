package imagecopy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
)

// changed is data with 64 KiB inserted at 1 MiB (a new qcow2 cluster: everything
// after it shifts) and 4 KiB rewritten at 6 MiB.
func changed(data []byte) []byte {
	out := append(append(append([]byte{}, data[:1<<20]...), payload(64 << 10)[:64<<10]...), data[1<<20:]...)
	for i := range 4096 {
		out[6<<20+i] ^= 0x5a
	}
	return out
}

// TestWarmRoundsSendOnlyWhatChanged: the first pre-copy round sends the whole
// snapshot; the second, of a snapshot with a shift and a small change, sends a few
// pieces and finds the rest; the cut-over of that snapshot then finds every piece,
// sends nothing, and the final image assembled in the destination is the second
// snapshot byte for byte, with no pack or manifest left.
func TestWarmRoundsSendOnlyWhatChanged(t *testing.T) {
	src, dst := newFakeGlance(t), newFakeGlance(t)
	data1 := payload(8 << 20)
	data2 := changed(data1)
	s1 := src.put("db-1-warm-1", data1, map[string]any{"hw_disk_bus": "virtio"})
	s2 := src.put("db-1-warm-2", data2, map[string]any{"hw_disk_bus": "virtio"})
	var saves int
	w := &Warm{Src: src.client(), Dst: dst.client(), PackBytes: 3 << 20, Save: func(context.Context, *converterv1.WarmProgress) error { saves++; return nil }}
	p := &converterv1.WarmProgress{ImageName: "db-1"}
	r1, err := w.Round(t.Context(), s1, p)
	if err != nil {
		t.Fatal(err)
	}
	if r1.GetBytesRead() != int64(len(data1)) || r1.GetBytesSent() != int64(len(data1)) || r1.GetBytesFound() != 0 || len(p.GetPackImageIds()) != 3 {
		t.Fatalf("pre-copy round: %v, %d packs", r1, len(p.GetPackImageIds()))
	}
	r2, err := w.Round(t.Context(), s2, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second round: read %d, sent %d (%.1f%%), found %d in %d of %d pieces", r2.GetBytesRead(), r2.GetBytesSent(),
		100*float64(r2.GetBytesSent())/float64(r2.GetBytesRead()), r2.GetBytesFound(), r2.GetPiecesFound(), r2.GetPieces())
	if r2.GetBytesRead() != int64(len(data2)) || r2.GetBytesSent()+r2.GetBytesFound() != int64(len(data2)) || r2.GetBytesSent() > int64(len(data2))/8 {
		t.Fatalf("second round: %v", r2)
	}
	id, err := w.CutOver(t.Context(), s2, "db-1", p)
	if err != nil {
		t.Fatal(err)
	}
	if r3 := p.GetRounds()[2]; !r3.GetFinal() || r3.GetBytesSent() != 0 || r3.GetBytesFound() != int64(len(data2)) {
		t.Fatalf("cut-over of a snapshot the store holds whole: %v", r3)
	}
	img, got := only(t, dst)
	if img["id"] != id || !bytes.Equal(got, data2) || img["hw_disk_bus"] != "virtio" || img[SourceProperty] != s2 || saves != 3 {
		t.Fatalf("final image %v (equal %v), %d saves", img, bytes.Equal(got, data2), saves)
	}
}

// TestWarmRoundCutShortAndCorruptPack: a round whose worker dies leaves packs the
// next round deletes; a byte changed in a pack fails the assembly with ErrChecksum
// and leaves no final image; Discard leaves nothing.
func TestWarmRoundCutShortAndCorruptPack(t *testing.T) {
	src, dst := newFakeGlance(t), newFakeGlance(t)
	data := payload(6 << 20)
	s1 := src.put("db-1-warm-1", data, nil)
	ctx, die := context.WithCancel(t.Context())
	dies := &Warm{Src: src.client(), Dst: dst.client(), PackBytes: 1 << 20}
	dst.failPut = func(name string) bool {
		if strings.Contains(name, ".pack-r00-0002") {
			die()
		}
		return false
	}
	p := &converterv1.WarmProgress{ImageName: "db-1"}
	if _, err := dies.Round(ctx, s1, p); err == nil {
		t.Fatal("a round whose worker died finished")
	}
	dst.failPut = nil
	// What the dead worker had recorded: nothing (a round is recorded whole).
	p = &converterv1.WarmProgress{ImageName: "db-1"}
	w := &Warm{Src: src.client(), Dst: dst.client(), PackBytes: 1 << 20}
	if _, err := w.Round(t.Context(), s1, p); err != nil {
		t.Fatal(err)
	}
	if n := dst.count(); n != len(p.GetPackImageIds())+1 {
		t.Fatalf("%d images in the destination, want the round's %d packs and its manifest", n, len(p.GetPackImageIds()))
	}
	dst.mu.Lock()
	dst.data[p.GetPackImageIds()[2]][100] ^= 1
	dst.mu.Unlock()
	if _, err := w.CutOver(t.Context(), s1, "db-1", p); !errors.Is(err, ErrChecksum) {
		t.Fatalf("assembly from a changed pack: %v, want ErrChecksum", err)
	}
	if n := dst.count(); n != len(p.GetPackImageIds())+1 {
		t.Fatalf("%d images after a failed assembly, want the packs and manifest only", n)
	}
	if err := w.Discard(t.Context(), p); err != nil || dst.count() != 0 {
		t.Fatalf("after Discard: %d images, %v", dst.count(), err)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m := &manifest{digests: [][32]byte{{1}, {2}}, locs: []location{{pack: 0, off: 0, size: 70000}, {pack: 1, off: 1 << 33, size: 5}}}
	got, err := decodeManifest(bytes.NewReader(m.encode()), 2)
	if err != nil || len(got.locs) != 2 || got.locs[1] != m.locs[1] || got.digests[0] != m.digests[0] {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := decodeManifest(bytes.NewReader(m.encode()), 1); err == nil {
		t.Fatal("a manifest naming a pack that is not there was taken")
	}
	if _, err := decodeManifest(strings.NewReader("nope"), 1); err == nil {
		t.Fatal("garbage was taken as a manifest")
	}
}

// TestWarmCutOver: after a pre-copy round, the cut-over reads the final snapshot
// and assembles at once: the image is the final snapshot byte for byte, only the
// changed pieces were sent, the round is recorded, the store is gone; a piece
// changed in a pack fails it with ErrChecksum and leaves no final image.
func TestWarmCutOver(t *testing.T) {
	for _, corrupt := range []bool{false, true} {
		src, dst := newFakeGlance(t), newFakeGlance(t)
		data1 := payload(8 << 20)
		data2 := changed(data1)
		s1 := src.put("db-1-warm-1", data1, nil)
		s2 := src.put("db-1-warm-2", data2, map[string]any{"hw_disk_bus": "virtio"})
		w := &Warm{Src: src.client(), Dst: dst.client(), PackBytes: 3 << 20}
		p := &converterv1.WarmProgress{ImageName: "db-1"}
		if _, err := w.Round(t.Context(), s1, p); err != nil {
			t.Fatal(err)
		}
		if corrupt {
			dst.mu.Lock()
			dst.data[p.GetPackImageIds()[2]][12345] ^= 1
			dst.mu.Unlock()
			_, err := w.CutOver(t.Context(), s2, "db-1", p)
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("cut-over over a changed pack: %v, want ErrChecksum", err)
			}
			if n := dst.count(); n != len(p.GetPackImageIds())+1 || len(p.GetRounds()) != 1 {
				t.Fatalf("%d images and %d rounds after a failed cut-over, want the packs and manifest, one round", n, len(p.GetRounds()))
			}
			continue
		}
		id, err := w.CutOver(t.Context(), s2, "db-1", p)
		if err != nil {
			t.Fatal(err)
		}
		img, got := only(t, dst)
		r := p.GetRounds()[1]
		if img["id"] != id || !bytes.Equal(got, data2) || img["hw_disk_bus"] != "virtio" || !r.GetFinal() ||
			r.GetBytesSent()+r.GetBytesFound() != int64(len(data2)) || r.GetBytesSent() > int64(len(data2))/8 {
			t.Fatalf("final image %v (equal %v), round %v", img, bytes.Equal(got, data2), r)
		}
		// A worker taking over after the image was whole: the image, nothing read.
		again, err := w.CutOver(t.Context(), s2, "db-1", p)
		if err != nil || again != id || dst.count() != 1 {
			t.Fatalf("cut-over again: %s %v, %d images", again, err, dst.count())
		}
	}
}
