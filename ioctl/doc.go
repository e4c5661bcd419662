// Package ioctl packs and unpacks the device-mapper control protocol: the
// struct dm_ioctl header, its chained payloads (target specs, name lists,
// target versions, dependency lists, message replies) and the request numbers
// of the 18 control commands, and issues them on /dev/mapper/control.
//
// The package holds no policy. It knows bytes, offsets, command numbers,
// flags, the lowest interface version that has each command, and the
// DM_BUFFER_FULL_FLAG retry. It does not validate device names beyond what
// the wire format can carry, never sleeps and never retries EBUSY: that is the
// job of package dm.
//
// # Layout
//
// Every control ioctl is _IOWR(0xfd, nr, struct dm_ioctl): a 312-byte header
// followed by a payload. On the way in, data_size is the size of the whole
// buffer and data_start the offset of the payload (312, the header size
// rounded up to 8). On the way out, the kernel rewrites data_start to 312 and
// data_size to the end of what it wrote, so a reply whose data_size is 305
// (offsetof(struct dm_ioctl, data)) or 312 carries no payload.
//
// # Seam
//
// All I/O goes through the [Transport] interface, one ioctl on one buffer.
// [File] is the real one; tests put a fake kernel behind the interface.
// A [Conn] issues requests through a Transport on pooled buffers it sizes
// from the replies: [Conn.Do] one request, [Conn.DoEach] a run of requests
// of one command on one held buffer (a status read per device of a list).
//
// # Decoders
//
// Decoders never panic and never read out of bounds, whatever bytes they are
// given: every length, offset and next pointer is checked. Chained payloads
// are read with iterators that stop at the first inconsistency and report it
// once through Err.
package ioctl
