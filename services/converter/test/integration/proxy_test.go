package integration

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
)

// faultyProxy is a TCP proxy on loopback in front of a real Glance. On the first
// connection whose request downloads image data (".../file"), it resets the
// connection after resetAfter body bytes, or flips the body byte at flipAt.
type faultyProxy struct {
	ln         net.Listener
	target     string
	resetAfter int64
	flipAt     int64
	armed      atomic.Bool
	resets     atomic.Int32
	flips      atomic.Int32
	wg         sync.WaitGroup
	mu         sync.Mutex
	conns      []net.Conn
}

func (p *faultyProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

// close stops the proxy and cuts every connection it holds.
func (p *faultyProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func newProxy(t *testing.T, target string) *faultyProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultyProxy{ln: ln, target: target, resetAfter: -1, flipAt: -1}
	p.armed.Store(true)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultyProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(c.(*net.TCPConn)) }()
	}
}

func (p *faultyProxy) serve(client *net.TCPConn) {
	defer client.Close()
	p.track(client)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	p.track(server)
	// Requests on a connection are sequential (no pipelining): when the client sends
	// the first image-data GET, the next response on this connection is its answer.
	var fileNext atomic.Bool
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				data := buf[:n]
				if bytes.HasPrefix(data, []byte("GET ")) && bytes.Contains(data[:bytes.IndexByte(data, '\n')+1], []byte("/file ")) && p.armed.CompareAndSwap(true, false) {
					fileNext.Store(true)
				}
				if _, werr := server.Write(data); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	var head []byte
	inBody, done := false, false
	var off int64 // body offset of the next byte passed on
	for {
		n, err := server.Read(buf)
		data := buf[:n]
		if !done && !inBody && fileNext.Load() {
			head = append(head, data...)
			i := bytes.Index(head, []byte("\r\n\r\n"))
			if i < 0 {
				if err != nil {
					return
				}
				continue
			}
			inBody = true
			if _, werr := client.Write(head[:i+4]); werr != nil {
				return
			}
			data = head[i+4:]
		}
		if inBody && !done && len(data) > 0 {
			end := off + int64(len(data))
			if p.flipAt >= off && p.flipAt < end {
				data[p.flipAt-off] ^= 0xff
				p.flips.Add(1)
				done = true
			}
			if p.resetAfter >= 0 && end > p.resetAfter {
				if keep := p.resetAfter - off; keep > 0 {
					_, _ = client.Write(data[:keep])
				}
				_ = client.SetLinger(0) // RST, not FIN
				p.resets.Add(1)
				return
			}
			off = end
		}
		if len(data) > 0 {
			if _, werr := client.Write(data); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// via returns a copy of sc that reaches its service through the proxy.
func via(sc *gophercloud.ServiceClient, p *faultyProxy) *gophercloud.ServiceClient {
	c := *sc
	c.Endpoint = "http://" + p.ln.Addr().String() + "/"
	c.ResourceBase = c.Endpoint + "v2/"
	return &c
}

// TestCopyThroughAFaultyLink copies the seed image from the old cloud's Glance
// through a proxy that resets the connection mid-download (the copy goes on by
// Range from the byte it broke at, and finishes identical), then through one that flips a byte (the copy
// fails with a checksum error and leaves no image in the new cloud).
func TestCopyThroughAFaultyLink(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	oi, ni, srcID := glances(ctx, t)
	host := oi.Endpoint[len("http://"):]
	host = host[:len(host)-1]
	dst := imagecopy.NewGlance(ni)

	reset := newProxy(t, host)
	reset.resetAfter = 300 << 10
	c := &imagecopy.Copier{Src: imagecopy.NewGlance(via(oi, reset)), Dst: dst, ChunkSize: 1 << 20, Retries: 2}
	p := &converterv1.CopyProgress{}
	id, err := c.Copy(ctx, srcID, "itest-reset-"+time.Now().Format("150405.000"), p)
	if err != nil {
		t.Fatalf("copy through a reset: %v", err)
	}
	t.Cleanup(func() { _ = dst.Delete(context.Background(), id) })
	got, err := dst.Image(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	src, err := imagecopy.NewGlance(oi).Image(ctx, srcID)
	if err != nil {
		t.Fatal(err)
	}
	// The copy goes on with a Range request from the byte where the reset cut it:
	// nothing the copy had read is read again (what was in flight is, and is not
	// counted: it never reached the copy), inside the same chunk upload.
	extra := p.GetTransferredBytes() - p.GetTotalBytes()
	if reset.resets.Load() != 1 || got.Checksum != src.Checksum || extra != 0 || p.GetSourceResumes() != 1 {
		t.Fatalf("resets %d, checksum %s vs %s, transferred %d for %d, %d Range resumes", reset.resets.Load(), got.Checksum, src.Checksum, p.GetTransferredBytes(), p.GetTotalBytes(), p.GetSourceResumes())
	}
	t.Logf("reset after 300 KiB of a chunk: read %d bytes for %d, %d Range resume, identical", p.GetTransferredBytes(), p.GetTotalBytes(), p.GetSourceResumes())

	flip := newProxy(t, host)
	flip.flipAt = 4242
	c = &imagecopy.Copier{Src: imagecopy.NewGlance(via(oi, flip)), Dst: dst, ChunkSize: 1 << 20}
	name := "itest-flip-" + time.Now().Format("150405.000")
	_, flipErr := c.Copy(ctx, srcID, name, &converterv1.CopyProgress{})
	if !errors.Is(flipErr, imagecopy.ErrChecksum) || flip.flips.Load() != 1 {
		t.Fatalf("copy through a flipped byte: %v (flips %d), want ErrChecksum", flipErr, flip.flips.Load())
	}
	if left, err := imagecopy.ChunkImages(ctx, dst, name); err != nil || len(left) != 0 {
		t.Fatalf("%d chunk images left after the checksum failure (%v)", len(left), err)
	}
	if left, err := imagecopy.Named(ctx, dst, name); err != nil || len(left) != 0 {
		t.Fatalf("%d images named %s left (%v)", len(left), name, err)
	}
	t.Logf("flipped byte: %v", flipErr)
}
