package catalog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The files of a catalog directory.
const (
	lockFile     = "lock"
	snapshotFile = "catalog.json"
	journalFile  = "journal"
)

// compactEvery is how many journal records may accumulate before the state
// is written out whole and the journal restarted; it grows with the number
// of volumes so that the cost of writing the state stays flat per operation.
const compactEvery = 4096

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// record is one line of the journal. An operation is an "op" record,
// written and made durable before anything is sent to the kernel, followed
// by "done" (it took effect: apply it) or "undo" (it did not, and nothing
// of it is left). A group whose transaction failed part-way is first cut
// down, durably, to the operations that went in: "trim" keeps its first
// Keep.
type record struct {
	Seq  uint64 `json:"seq"`
	Kind string `json:"kind"` // "op", "done", "undo" or "trim"
	Op   *op    `json:"op,omitempty"`
	Keep int    `json:"keep,omitempty"`
}

// snapshotState is the catalog file: the whole state as of journal record
// Seq. Records up to Seq are already in it, except the operations still
// open when it was written (activations and deactivations run beside
// compaction): those are in Open, and their outcomes follow in the
// journal. A state with open operations is version 2, so that a reader
// that would drop them refuses it instead.
type snapshotState struct {
	Version  int        `json:"version"`
	Seq      uint64     `json:"seq"`
	TID      uint64     `json:"transaction_id"`
	NextID   uint32     `json:"next_id"`
	Volumes  []Volume   `json:"volumes"`
	Deferred []Deferred `json:"deferred,omitempty"`
	Open     []record   `json:"open,omitempty"`
}

// journal appends records to the journal file of a catalog directory.
type journal struct {
	dir     string
	f       *os.File
	records int // since the last compaction
	buf     bytes.Buffer
}

// encode renders r as one line: the CRC-32C of the JSON in hex, a space, the
// JSON, a newline.
func encode(w *bytes.Buffer, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%08x ", crc32.Checksum(b, crcTable))
	w.Write(b)
	w.WriteByte('\n')
	return nil
}

// append writes records in one write(2) and, if sync, makes them durable
// (fdatasync). Records written without sync become durable with the next
// synced write, which flushes the whole file.
func (j *journal) append(sync bool, rs ...record) error {
	j.buf.Reset()
	for _, r := range rs {
		if err := encode(&j.buf, r); err != nil {
			return err
		}
	}
	if _, err := j.f.Write(j.buf.Bytes()); err != nil {
		return &JournalError{Op: "write", Path: j.f.Name(), Err: err}
	}
	j.records += len(rs)
	if sync {
		if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
			return &JournalError{Op: "sync", Path: j.f.Name(), Err: err}
		}
	}
	return nil
}

func (j *journal) close() error {
	if j.f == nil {
		return nil
	}
	err := j.f.Sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f = nil
	return err
}

// readJournal reads the journal's records. A last line that is cut short or
// fails its checksum is a write torn by a crash: it is dropped, and good
// is the length of the file without it. A bad line followed by good ones is
// corruption.
func readJournal(path string) (rs []record, good int64, err error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, &JournalError{Op: "open", Path: path, Err: err}
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	var off int64
	torn := false
	for line := 1; ; line++ {
		b, rerr := br.ReadBytes('\n')
		if len(b) == 0 && rerr == io.EOF {
			break
		}
		if rerr != nil && rerr != io.EOF {
			return nil, 0, &JournalError{Op: "read", Path: path, Err: rerr}
		}
		r, ok := decodeLine(b)
		if !ok {
			torn = true
		} else if torn {
			return nil, 0, &JournalError{Op: "read", Path: path, Err: fmt.Errorf("line %d: damaged record before good ones", line-1)}
		}
		if !torn {
			rs = append(rs, r)
			off += int64(len(b))
		}
		if rerr == io.EOF {
			break
		}
	}
	return rs, off, nil
}

func decodeLine(b []byte) (record, bool) {
	var r record
	if len(b) < 10 || b[len(b)-1] != '\n' || b[8] != ' ' {
		return r, false
	}
	sum, err := strconv.ParseUint(string(b[:8]), 16, 32)
	if err != nil {
		return r, false
	}
	body := b[9 : len(b)-1]
	if crc32.Checksum(body, crcTable) != uint32(sum) {
		return r, false
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, false
	}
	if r.Kind != "op" && r.Kind != "done" && r.Kind != "undo" && r.Kind != "trim" || r.Kind == "op" && r.Op == nil || r.Kind == "trim" && r.Keep < 1 {
		return r, false
	}
	return r, true
}

// writeFileAtomic replaces dir/name with data: a temporary file written and
// synced, renamed over the old one, and the directory synced, so that after
// a crash the file is either the old one or the new one, whole.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return &JournalError{Op: "create", Path: tmp, Err: err}
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return &JournalError{Op: "write", Path: filepath.Join(dir, name), Err: err}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
