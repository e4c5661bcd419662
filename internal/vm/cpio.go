package vm

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// The kernel unpacks an initramfs in the "new ASCII" (newc) cpio format
// (Documentation/driver-api/early-userspace/buffer-format.rst):
//
//	c_magic     6 bytes  "070701"
//	c_ino       8 bytes  hexadecimal, like every field below
//	c_mode      8        file type and permission bits
//	c_uid       8
//	c_gid       8
//	c_nlink     8
//	c_mtime     8
//	c_filesize  8        must be 0 for directories and device nodes
//	c_maj       8        device holding the file
//	c_min       8
//	c_rmaj      8        for block and character device nodes
//	c_rmin      8
//	c_namesize  8        length of the name including its NUL
//	c_chksum    8        0 for "070701"
//
// The header and name are padded to a multiple of four bytes, and so is the
// data that follows. A member named "TRAILER!!!" ends the archive.
const (
	cpioMagic      = "070701"
	cpioHeaderSize = 110
	cpioTrailer    = "TRAILER!!!"
	// cpioMaxFile is the largest size c_filesize can hold.
	cpioMaxFile = 1<<32 - 1
)

// File type bits of c_mode, as in <linux/stat.h>.
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
	modeBlkDev  = 0o060000
	modePerm    = 0o7777
)

// CPIOWriter writes a newc cpio archive, the format the kernel unpacks as an
// initramfs. Members are written in the order they are added; a directory
// must be added before the members inside it. Every member gets its own inode
// number and a link count of one, so the kernel never treats two members as
// hard links of one file. The archive is complete only after Close.
type CPIOWriter struct {
	w      io.Writer
	ino    uint32
	err    error
	closed bool
}

// NewCPIOWriter returns a writer that writes an archive to w.
func NewCPIOWriter(w io.Writer) *CPIOWriter {
	return &CPIOWriter{w: w, ino: 1}
}

// Dir adds a directory.
func (c *CPIOWriter) Dir(name string, perm fs.FileMode) error {
	return c.member(name, modeDir|uint32(perm.Perm()), 2, 0, 0, 0, nil)
}

// File adds a regular file of size bytes read from r. It fails if r holds
// fewer than size bytes; bytes past size are not read.
func (c *CPIOWriter) File(name string, perm fs.FileMode, size int64, r io.Reader) error {
	if size < 0 || size > cpioMaxFile {
		return c.fail(fmt.Errorf("cpio: %s: size %d out of range", name, size))
	}
	return c.member(name, modeRegular|uint32(perm&modePerm), 1, uint32(size), 0, 0, r)
}

// Bytes adds a regular file holding data.
func (c *CPIOWriter) Bytes(name string, perm fs.FileMode, data []byte) error {
	return c.File(name, perm, int64(len(data)), bytes.NewReader(data))
}

// Symlink adds a symbolic link name pointing to target.
func (c *CPIOWriter) Symlink(name, target string) error {
	if target == "" {
		return c.fail(fmt.Errorf("cpio: %s: empty symlink target", name))
	}
	return c.member(name, modeSymlink|0o777, 1, uint32(len(target)), 0, 0, strings.NewReader(target))
}

// CharDev adds a character device node.
func (c *CPIOWriter) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return c.member(name, modeCharDev|uint32(perm.Perm()), 1, 0, major, minor, nil)
}

// Close writes the trailer. It does not close the underlying writer.
func (c *CPIOWriter) Close() error {
	if c.closed {
		return c.err
	}
	err := c.member(cpioTrailer, 0, 1, 0, 0, 0, nil)
	c.closed = true
	return err
}

func (c *CPIOWriter) fail(err error) error {
	if c.err == nil {
		c.err = err
	}
	return err
}

// member writes one header, the name, and size bytes of r.
func (c *CPIOWriter) member(name string, mode, nlink, size, rmajor, rminor uint32, r io.Reader) error {
	if c.err != nil {
		return c.err
	}
	if c.closed {
		return c.fail(fmt.Errorf("cpio: write after Close"))
	}
	if name != cpioTrailer {
		var err error
		if name, err = cleanMemberName(name); err != nil {
			return c.fail(err)
		}
	}
	ino := c.ino
	c.ino++
	if name == cpioTrailer {
		ino = 0
	}
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		cpioMagic, ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	buf := make([]byte, 0, cpioHeaderSize+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(len(buf)))...)
	if _, err := c.w.Write(buf); err != nil {
		return c.fail(err)
	}
	if size > 0 {
		n, err := io.CopyN(c.w, r, int64(size))
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("cpio: %s: short data: %d of %d bytes", name, n, size)
			}
			return c.fail(err)
		}
		if p := pad4(int(size)); p > 0 {
			if _, err := c.w.Write(make([]byte, p)); err != nil {
				return c.fail(err)
			}
		}
	}
	return nil
}

// cleanMemberName turns "/a/b" or "./a/b" into "a/b" and rejects names the
// kernel would resolve outside the archive root.
func cleanMemberName(name string) (string, error) {
	n := strings.TrimLeft(strings.TrimPrefix(name, "./"), "/")
	if n == "" || n == "." {
		return "", fmt.Errorf("cpio: empty member name %q", name)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." || part == "" {
			return "", fmt.Errorf("cpio: bad member name %q", name)
		}
	}
	if strings.IndexByte(n, 0) >= 0 {
		return "", fmt.Errorf("cpio: member name %q holds a NUL", name)
	}
	return n, nil
}

// pad4 is the number of zero bytes that bring n to a multiple of four.
func pad4(n int) int { return (4 - n%4) % 4 }
