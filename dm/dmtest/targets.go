package dmtest

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// newTargetType returns the model of a target type by name; unknown names
// get the opaque model.
func newTargetType(name string, v ioctl.Version) *targetType {
	tt := &targetType{name: name, version: v}
	switch name {
	case "linear":
		tt.ctr = linearCtr
	case "striped":
		tt.ctr = stripedCtr
	case "zero":
		tt.ctr = zeroCtr
	case "error":
		tt.features = featWildcard
		tt.ctr = func(*Kernel, *target, []string) (targetState, error) { return noStatus{}, nil }
	case "flakey":
		tt.ctr = flakeyCtr
	case "thin-pool":
		tt.features = featSingleton | featAlwaysWriteable | featImmutable
		tt.ctr = poolCtr
	case "thin":
		tt.ctr = thinCtr
	default:
		tt.ctr = func(_ *Kernel, ti *target, _ []string) (targetState, error) { return opaque{}, nil }
	}
	return tt
}

// nameVersion is DMEMIT_TARGET_NAME_VERSION, the start of an IMA line.
func nameVersion(tt *targetType) string {
	return fmt.Sprintf("target_name=%s,target_version=%d.%d.%d", tt.name, tt.version[0], tt.version[1], tt.version[2])
}

// noStatus is a target without a status method (zero, error): the kernel
// writes an empty string.
type noStatus struct{}

func (noStatus) status(*Kernel, *target, statusType, bool) string { return "" }

// opaque is a target type the fake does not know: it keeps its parameters
// and prints them back as its table line.
//
// Differs from the kernel: a real target checks and normalises its
// parameters.
type opaque struct{}

func (opaque) status(_ *Kernel, ti *target, typ statusType, _ bool) string {
	if typ == statusTable {
		return ti.params
	}
	return ""
}

// linear: <dev> <offset>
type linearTarget struct {
	dev   devKey
	start uint64
}

func linearCtr(k *Kernel, ti *target, argv []string) (targetState, error) {
	if len(argv) != 2 {
		return nil, unix.EINVAL
	}
	start, ok := sscanfULL(argv[1])
	if !ok {
		return nil, unix.EINVAL
	}
	dev, err := k.getDevice(ti.table, argv[0])
	if err != nil {
		return nil, err
	}
	return &linearTarget{dev: dev, start: start}, nil
}

func (lc *linearTarget) status(_ *Kernel, ti *target, typ statusType, _ bool) string {
	switch typ {
	case statusTable:
		return fmt.Sprintf("%s %d", lc.dev, lc.start)
	case statusIMA:
		return fmt.Sprintf("%s,device_name=%s,start=%d;", nameVersion(ti.tt), lc.dev, lc.start)
	}
	return ""
}

func (lc *linearTarget) areas(_ *Kernel, ti *target) []area {
	return []area{{lc.dev, lc.start, ti.len}}
}

// striped: <#stripes> <chunk size> [<dev> <offset>]+
type stripedTarget struct {
	chunk   uint64
	width   uint64
	stripes []linearTarget
}

func stripedCtr(k *Kernel, ti *target, argv []string) (targetState, error) {
	if len(argv) < 2 {
		return nil, unix.EINVAL
	}
	n, ok := kstrtouint(argv[0])
	if !ok || n == 0 {
		return nil, unix.EINVAL
	}
	chunk, ok := kstrtouint(argv[1])
	if !ok || chunk == 0 {
		return nil, unix.EINVAL
	}
	if ti.len%uint64(n) != 0 {
		return nil, unix.EINVAL // "Target length not divisible by number of stripes"
	}
	width := ti.len / uint64(n)
	if width%uint64(chunk) != 0 {
		return nil, unix.EINVAL // "Target length not divisible by chunk size"
	}
	if uint64(len(argv)) != 2+2*uint64(n) {
		return nil, unix.EINVAL // "Not enough destinations specified"
	}
	sc := &stripedTarget{chunk: uint64(chunk), width: width}
	for i := 0; i < int(n); i++ {
		start, ok := sscanfULL(argv[3+2*i])
		if !ok {
			return nil, unix.EINVAL
		}
		dev, err := k.getDevice(ti.table, argv[2+2*i])
		if err != nil {
			return nil, err
		}
		sc.stripes = append(sc.stripes, linearTarget{dev, start})
	}
	return sc, nil
}

func (sc *stripedTarget) status(_ *Kernel, ti *target, typ statusType, _ bool) string {
	var b strings.Builder
	switch typ {
	case statusInfo:
		fmt.Fprintf(&b, "%d ", len(sc.stripes))
		for _, s := range sc.stripes {
			fmt.Fprintf(&b, "%s ", s.dev)
		}
		b.WriteString(strings.Repeat("A", len(sc.stripes)))
	case statusTable:
		fmt.Fprintf(&b, "%d %d", len(sc.stripes), sc.chunk)
		for _, s := range sc.stripes {
			fmt.Fprintf(&b, " %s %d", s.dev, s.start)
		}
	case statusIMA:
		fmt.Fprintf(&b, "%s,stripes=%d,chunk_size=%d", nameVersion(ti.tt), len(sc.stripes), sc.chunk)
		for i, s := range sc.stripes {
			fmt.Fprintf(&b, ",stripe_%d_device_name=%s,stripe_%d_physical_start=%d,stripe_%d_status=A", i, s.dev, i, s.start, i)
		}
		b.WriteString(";")
	}
	return b.String()
}

func (sc *stripedTarget) areas(_ *Kernel, _ *target) []area {
	var as []area
	for _, s := range sc.stripes {
		as = append(as, area{s.dev, s.start, sc.width})
	}
	return as
}

func zeroCtr(_ *Kernel, _ *target, argv []string) (targetState, error) {
	if len(argv) != 0 {
		return nil, unix.EINVAL // "No arguments required"
	}
	return noStatus{}, nil
}

// flakey: <dev> <offset> <up interval> <down interval> [<#features> <feature args>...]
//
// Differs from the kernel: the feature arguments are counted but not
// checked, and printed back as given.
type flakeyTarget struct {
	dev      devKey
	start    uint64
	up, down uint32
	features []string
}

func flakeyCtr(k *Kernel, ti *target, argv []string) (targetState, error) {
	if len(argv) < 4 {
		return nil, unix.EINVAL
	}
	start, ok := sscanfULL(argv[1])
	if !ok {
		return nil, unix.EINVAL
	}
	up, ok1 := kstrtouint(argv[2])
	down, ok2 := kstrtouint(argv[3])
	if !ok1 || !ok2 || up+down == 0 || up+down < up {
		return nil, unix.EINVAL
	}
	fc := &flakeyTarget{start: start, up: up, down: down}
	if rest := argv[4:]; len(rest) > 0 {
		n, ok := kstrtouint(rest[0])
		if !ok || n > 7 || int(n) > len(rest)-1 {
			return nil, unix.EINVAL
		}
		fc.features = rest[1 : 1+n]
	}
	dev, err := k.getDevice(ti.table, argv[0])
	if err != nil {
		return nil, err
	}
	fc.dev = dev
	return fc, nil
}

func (fc *flakeyTarget) status(_ *Kernel, _ *target, typ statusType, _ bool) string {
	if typ != statusTable {
		return ""
	}
	s := fmt.Sprintf("%s %d %d %d %d", fc.dev, fc.start, fc.up, fc.down, len(fc.features))
	for _, f := range fc.features {
		s += " " + f
	}
	return s
}

func (fc *flakeyTarget) areas(_ *Kernel, ti *target) []area {
	return []area{{fc.dev, fc.start, ti.len}}
}
