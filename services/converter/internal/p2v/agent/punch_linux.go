package agent

import (
	"os"

	"golang.org/x/sys/unix"
)

// punch makes [off, off+size) of f a hole (it reads as zeros, takes no space).
func punch(f *os.File, off, size int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, size)
	if err == unix.EOPNOTSUPP {
		_, err = f.WriteAt(make([]byte, size), off)
	}
	return err
}
