package thin

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/ioctl"
)

// lineKernel answers every ioctl with version 4.47.0 and one target of
// type typ whose status is line, laid out as the kernel lays it out.
type lineKernel struct{ typ, line string }

func (k *lineKernel) Ioctl(_ uint, b []byte) error {
	r := ioctl.Request{Cmd: ioctl.CmdTableLoad, Header: ioctl.Header{Version: ioctl.Version{4, 47, 0}},
		Targets: []ioctl.TargetSpec{{Length: 2048, Type: k.typ, Params: k.line}}}
	n := r.Size()
	if n > len(b) { // DM_VERSION at open, or a buffer too small
		binary.NativeEndian.PutUint32(b[4:], 47)
		binary.NativeEndian.PutUint32(b[28:], uint32(ioctl.FlagBufferFull))
		return nil
	}
	if _, err := r.MarshalTo(b[:n]); err != nil {
		return err
	}
	binary.NativeEndian.PutUint32(b[12:], uint32(n))
	return nil
}

// Pool and volume statuses are parsed where the kernel wrote them; what
// the results keep (unknown tokens, the text of a parse error, a foreign
// target's type) must not change when the buffer is reused.
func TestStatusInPlaceKeepsNothingOfTheBuffer(t *testing.T) {
	k := &lineKernel{typ: PoolTargetType, line: "7 9/4096 3/163840 - rw discard_passdown queue_if_no_space - 1024 frobnicate 42 "}
	ctl, err := dm.Open(dm.WithTransport(k), dm.WithUdev(dm.UdevOff))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	ctx := context.Background()
	p := &Pool{ctl: ctl, name: "pool"}
	st, err := p.Status(ctx)
	if err != nil || st.TransactionID != 7 || strings.Join(st.Extra, ",") != "frobnicate,42" {
		t.Fatalf("status %+v, %v", st, err)
	}

	k.line = "not a status line at all"
	_, perr := p.Status(ctx)
	if perr == nil {
		t.Fatal("garbage parsed")
	}
	k.typ, k.line = "frobnicator", strings.Repeat("Z", 200)
	_, terr := p.Status(ctx)
	if !errors.Is(terr, ErrNotPool) {
		t.Fatalf("foreign target: %v", terr)
	}
	k.typ, k.line = ThinTargetType, "1024 2047 more tokens"
	v := &Volume{pool: p, name: "vol"}
	ts, err := v.Status(ctx)
	if err != nil || ts.MappedSectors != 1024 || strings.Join(ts.Extra, ",") != "more,tokens" {
		t.Fatalf("thin status %+v, %v", ts, err)
	}
	// Overwrite the reused buffer with other bytes, then look again.
	k.typ, k.line = ThinTargetType, strings.Repeat("X", 300)
	v.Status(ctx)
	p.Status(ctx)
	if strings.Join(st.Extra, ",") != "frobnicate,42" || strings.Join(ts.Extra, ",") != "more,tokens" {
		t.Errorf("kept tokens changed with the buffer: %q %q", st.Extra, ts.Extra)
	}
	if !strings.Contains(perr.Error(), "not a status line at all") {
		t.Errorf("parse error lost its line: %v", perr)
	}
	if !strings.Contains(terr.Error(), `"frobnicator"`) {
		t.Errorf("foreign type lost: %v", terr)
	}
}
