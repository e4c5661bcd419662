package ioctl

import (
	"fmt"
	"testing"
)

func thinTargets(n int) []TargetSpec {
	specs := make([]TargetSpec, n)
	for i := range specs {
		specs[i] = TargetSpec{
			Start:  uint64(i) * 2097152,
			Length: 2097152,
			Type:   "thin",
			Params: fmt.Sprintf("253:2 %d", i+1),
		}
	}
	return specs
}

func tableLoad(n int) *Request {
	return &Request{Cmd: CmdTableLoad, Header: Header{Name: "thin-volume", UUID: "THINP-0123456789abcdef"}, Targets: thinTargets(n)}
}

// TestMarshalZeroAllocs: encoding into a reused buffer allocates nothing,
// whatever the command.
func TestMarshalZeroAllocs(t *testing.T) {
	reqs := []*Request{
		tableLoad(1),
		tableLoad(64),
		{Cmd: CmdTargetMsg, Header: Header{Name: "pool"}, Message: "create_thin 1"},
		{Cmd: CmdDevRename, Header: Header{Name: "old"}, String: "new"},
		{Cmd: CmdDevSuspend, Header: Header{Name: "pool", Flags: FlagSuspend | FlagNoFlush}},
		{Cmd: CmdListDevices, Header: Header{Flags: FlagUUID}},
	}
	for _, r := range reqs {
		buf := make([]byte, r.Size()+1024)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := r.MarshalTo(buf); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v with %d targets: %v allocs per MarshalTo, want 0", r.Cmd, len(r.Targets), allocs)
		}
	}
	specs := thinTargets(64)
	buf := make([]byte, targetsSize(specs))
	if a := testing.AllocsPerRun(100, func() { _, _ = putTargets(buf, specs) }); a != 0 {
		t.Errorf("putTargets: %v allocs", a)
	}
	h := Header{Name: "pool", UUID: "u"}
	if a := testing.AllocsPerRun(100, func() { _ = h.MarshalTo(buf) }); a != 0 {
		t.Errorf("Header.MarshalTo: %v allocs", a)
	}
}

func BenchmarkMarshalTableLoad(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			r := tableLoad(n)
			buf := make([]byte, r.Size())
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := r.MarshalTo(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func nameListReply(n int) []byte {
	entries := make([]NameEntry, n)
	for i := range entries {
		entries[i] = NameEntry{
			Dev:     Dev{Major: 253, Minor: uint32(i)}.Encode(),
			Name:    fmt.Sprintf("thinp-pool0-thin-%06d", i),
			EventNr: uint32(i),
			Flags:   NameListHasUUID,
			UUID:    fmt.Sprintf("THINP-%032x", i),
		}
	}
	return appendNameList(nil, Version{4, 47, 0}, entries)
}

// BenchmarkNameList decodes a DM_LIST_DEVICES reply of 1,000, 10,000 and
// 100,000 devices (name, event number, uuid); ns/device shows that decoding
// is linear in the number of devices.
func BenchmarkNameList(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			payload := nameListReply(n)
			v := Version{4, 47, 0}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := NewNameListReader(payload, v)
				count := 0
				for r.Next() {
					count++
				}
				if r.Err() != nil || count != n {
					b.Fatalf("%d entries, %v", count, r.Err())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/device")
		})
	}
}

// BenchmarkTargetReader decodes a DM_TABLE_STATUS reply of 64 thin targets,
// reusing one reader.
func BenchmarkTargetReader(b *testing.B) {
	specs := make([]TargetSpec, 64)
	for i := range specs {
		specs[i] = TargetSpec{Start: uint64(i) * 2097152, Length: 2097152, Type: "thin", Params: fmt.Sprintf("%d %d", i*4096, i*4096+4095)}
	}
	buf := appendStatusTargets(make([]byte, DataStart), DataStart, specs)
	h := Header{DataStart: DataStart, DataSize: uint32(len(buf)), TargetCount: uint32(len(specs))}
	var r TargetReader
	b.SetBytes(int64(len(buf) - DataStart))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.Reset(&h, buf)
		n := 0
		for r.Next() {
			n++
		}
		if r.Err() != nil || n != len(specs) {
			b.Fatal(n, r.Err())
		}
	}
}

// BenchmarkConnDo is one DM_DEV_STATUS round trip through a Conn and a
// transport that does nothing: the cost of the layer itself.
func BenchmarkConnDo(b *testing.B) {
	c := &Conn{T: nopTransport{}}
	r := &Request{Cmd: CmdDevStatus, Header: Header{Name: "pool"}}
	fn := func(*Header, []byte) error { return nil }
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := c.Do(r, fn); err != nil {
			b.Fatal(err)
		}
	}
}

type nopTransport struct{}

func (nopTransport) Ioctl(uint, []byte) error { return nil }
