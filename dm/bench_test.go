package dm_test

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
)

// cannedStatus is a Transport that answers every ioctl with the same
// reply: version 4.47.0 and the table status of one thin target, as the
// kernel lays it out. It costs a copy of a few hundred bytes, so that the
// benchmarks below measure the library's own work around an ioctl.
type cannedStatus struct{ reply []byte }

func newCannedStatus(b testing.TB) *cannedStatus {
	r := ioctl.Request{Cmd: ioctl.CmdTableLoad, Header: ioctl.Header{Version: ioctl.Version{4, 47, 0}},
		Targets: []ioctl.TargetSpec{{Length: 2097152, Type: "thin", Params: "1024 2097151"}}}
	buf := make([]byte, r.Size())
	n, err := r.MarshalTo(buf)
	if err != nil {
		b.Fatal(err)
	}
	return &cannedStatus{reply: buf[:n]}
}

func (c *cannedStatus) Ioctl(_ uint, b []byte) error {
	n := copy(b, c.reply)
	binary.NativeEndian.PutUint32(b[12:], uint32(n)) // data_size: what was written
	return nil
}

// cannedControl is a Control over cannedStatus, closed when b ends, and
// the device the benchmarks read.
func cannedControl(b testing.TB) (*dm.Control, context.Context, dm.Ref) {
	ctl, err := dm.Open(dm.WithTransport(newCannedStatus(b)), dm.WithUdev(dm.UdevOff))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ctl.Close() })
	return ctl, context.Background(), dm.Name("thinp-bench-c-000042")
}

// BenchmarkStatus is Control.Status of one thin volume: validation, the
// request, the learned reply buffer, the reply's parsing into
// []TargetStatus. Compare BenchmarkStatusFloor.
func BenchmarkStatus(b *testing.B) {
	ctl, ctx, ref := cannedControl(b)
	b.ReportAllocs()
	for b.Loop() {
		st, err := ctl.Status(ctx, ref)
		if err != nil || len(st) != 1 || st[0].Status != "1024 2097151" {
			b.Fatal(st, err)
		}
	}
}

// BenchmarkStatusFloor is the same round trip as the benchmark program's
// raw floor does it: one reused 1 KiB buffer, MarshalTo, the transport,
// the status string read in place.
func BenchmarkStatusFloor(b *testing.B) {
	t := newCannedStatus(b)
	buf := make([]byte, 1<<10)
	r := ioctl.Request{Cmd: ioctl.CmdTableStatus, Header: ioctl.Header{Name: "thinp-bench-c-000042"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.MarshalTo(buf); err != nil {
			b.Fatal(err)
		}
		if err := t.Ioctl(ioctl.CmdTableStatus.Request(), buf); err != nil {
			b.Fatal(err)
		}
		off := int(binary.NativeEndian.Uint32(buf[16:])) + ioctl.SizeofTargetSpec
		if buf[off] != '1' {
			b.Fatal("no status")
		}
	}
}

// BenchmarkStatusFunc is BenchmarkStatus through StatusFunc, which hands
// out the status line without copying it.
func BenchmarkStatusFunc(b *testing.B) {
	ctl, ctx, ref := cannedControl(b)
	n := 0
	fn := func(st dm.TargetStatus) error {
		n += len(st.Status)
		return nil
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ctl.StatusFunc(ctx, ref, fn); err != nil {
			b.Fatal(err)
		}
	}
	if n == 0 {
		b.Fatal("no status seen")
	}
}
