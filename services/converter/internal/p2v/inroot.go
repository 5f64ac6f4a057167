package p2v

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// A guest's trees are hostile: a crafted disk may hold links that point anywhere
// ("/etc/redhat-release → /etc/shadow", "/etc/cloud → /root"). Every path of a guest
// the converter reads or writes is resolved inside the tree that holds it with
// openat2(2)'s RESOLVE_IN_ROOT, as the guest's kernel would resolve it with that
// tree as "/": a link's target, ".." included, never leaves it.

// maxGuestFile bounds what the converter reads of one guest file (configuration
// files are small; a crafted one may not be).
const maxGuestFile = 4 << 20

// openIn opens rel (a path as the guest sees it) inside the tree at root.
func openIn(root, rel string, flags int, mode uint32) (*os.File, error) {
	if strings.ContainsRune(rel, 0) {
		return nil, fmt.Errorf("p2v: %q: a NUL byte in a path", rel)
	}
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dir)
	rel = strings.TrimPrefix(filepath.Clean("/"+rel), "/")
	if rel == "" {
		rel = "."
	}
	for {
		fd, err := unix.Openat2(dir, rel, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode),
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) { // a rename raced the walk
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: "/" + rel, Err: err}
		}
		return os.NewFile(uintptr(fd), filepath.Join(root, rel)), nil
	}
}

// readIn reads the regular file rel inside root (at most maxGuestFile bytes).
func readIn(root, rel string) ([]byte, error) { return readInMax(root, rel, maxGuestFile) }

// readInMax reads the regular file rel inside root, refusing one larger than max.
func readInMax(root, rel string, max int64) ([]byte, error) {
	f, err := openIn(root, rel, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("p2v: /%s is not a regular file", strings.TrimPrefix(rel, "/"))
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		return nil, fmt.Errorf("p2v: /%s is larger than %d bytes", strings.TrimPrefix(rel, "/"), max)
	}
	return b, err
}

// existsIn reports whether rel is there inside root (a link counts, wherever it
// points).
func existsIn(root, rel string) bool {
	f, err := openIn(root, rel, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// readDirIn lists the names in the directory rel inside root, sorted.
func readDirIn(root, rel string) []string {
	f, err := openIn(root, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	sort.Strings(names)
	return names
}

// mkdirAllIn makes the directory rel and its parents inside root.
func mkdirAllIn(root, rel string) error {
	rel = strings.TrimPrefix(filepath.Clean("/"+rel), "/")
	if rel == "" {
		return nil
	}
	parent, name := filepath.Split(rel)
	if err := mkdirAllIn(root, parent); err != nil {
		return err
	}
	d, err := openIn(root, parent, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Mkdirat(int(d.Fd()), name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "mkdir", Path: "/" + rel, Err: err}
	}
	// What is there now must be a directory inside root (a link is resolved in it).
	f, err := openIn(root, rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("%w: /%s in the server's tree is not a directory, or a link to none inside the tree (%v)", ErrUnsupported, rel, err)
	}
	return f.Close()
}

// writeIn writes content to the file rel inside root, making its directories: the
// file keeps its mode if it was there, else it gets mode. A link at rel is replaced
// by the file (the converter's file is the server's now); links above it are
// resolved inside root: the write cannot leave it.
func writeIn(root, rel, content string, mode os.FileMode) error {
	if err := mkdirAllIn(root, filepath.Dir(filepath.Clean("/"+rel))); err != nil {
		return err
	}
	if f, err := openIn(root, rel, unix.O_PATH|unix.O_NOFOLLOW, 0); err == nil {
		fi, serr := f.Stat()
		f.Close()
		if serr == nil && fi.Mode()&os.ModeSymlink != 0 {
			if err := removeIn(root, rel); err != nil {
				return err
			}
		}
	}
	f, err := openIn(root, rel, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK, uint32(mode.Perm()))
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("p2v: /%s is not a regular file", strings.TrimPrefix(rel, "/"))
	}
	if err == nil {
		_, err = f.WriteString(content)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// chmodIn sets the mode of rel inside root.
func chmodIn(root, rel string, mode os.FileMode) error {
	f, err := openIn(root, rel, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Chmod(mode)
}

// guest is a server's trees mounted at roots (mount point → directory): its paths
// are read in the tree of the longest mount point that holds them.
type guest map[string]string

func (g guest) locate(p string) (root, rel string) {
	best := "/"
	for mp := range g {
		if (p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return g[best], strings.TrimPrefix(p, strings.TrimSuffix(best, "/"))
}

func (g guest) read(p string) ([]byte, error) { r, rel := g.locate(p); return readIn(r, rel) }
func (g guest) exists(p string) bool          { r, rel := g.locate(p); return existsIn(r, rel) }
func (g guest) readDir(p string) []string     { r, rel := g.locate(p); return readDirIn(r, rel) }

// glob lists the guest's paths matching pattern, whose last element only may hold
// wildcards, sorted.
func (g guest) glob(pattern string) []string {
	dir, base := filepath.Split(pattern)
	var out []string
	for _, n := range g.readDir(dir) {
		if ok, _ := filepath.Match(base, n); ok {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}

// safeDir makes the directory rel inside root and returns its path on the worker,
// to hand to tools (tar, cp, mount) that resolve paths as the worker does: so none
// of its elements may be a link (a crafted tree's /var → /etc, say), which would
// lead them out of the tree. One that is gives an error naming it.
func safeDir(root, rel string) (string, error) {
	if err := mkdirAllIn(root, rel); err != nil {
		return "", err
	}
	clean := strings.TrimPrefix(filepath.Clean("/"+rel), "/")
	if clean == "" {
		return root, nil
	}
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, clean, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH})
	if err != nil {
		return "", fmt.Errorf("%w: /%s in the server's tree is, or lies under, a link (%v): the converter writes there and will not follow it", ErrUnsupported, clean, err)
	}
	unix.Close(fd)
	return filepath.Join(root, clean), nil
}

// removeIn removes rel inside root (a link itself, not what it points to).
func removeIn(root, rel string) error {
	dir, name := filepath.Split(strings.TrimPrefix(filepath.Clean("/"+rel), "/"))
	d, err := openIn(root, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Unlinkat(int(d.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: "/" + rel, Err: err}
	}
	return nil
}
