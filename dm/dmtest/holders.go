package dmtest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Holder is one entry of a block device's holders directory in sysfs
// (/sys/dev/block/MAJ:MIN/holders/dm-N): a dm device that has the block
// device open because its live or inactive table uses it.
type Holder struct {
	Name  string // the entry's name, "dm-N"
	Minor uint32 // N
	// Link identifies the link itself, as the inode number sysfs gives
	// each node it creates does: a link made again (the device removed
	// and another one created with the same minor) gets a new Link.
	Link uint64
	// DevName and UUID are the holder's /sys/block/dm-N/dm/{name,uuid}.
	DevName, UUID string
}

// linkKey is one holder link: device d holds block device key.
type linkKey struct {
	d   *device
	key devKey
}

// Holders lists the holders of block device major:minor, in minor order,
// as the kernel's holders directory shows them: every dm device whose live
// or inactive table uses it.
//
// Differs from the kernel: links are numbered when Holders sees them, so a
// device that stops using the block device and uses it again between two
// calls keeps its Link, where sysfs would make a new node.
func (k *Kernel) Holders(major, minor uint32) []Holder {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.holders(major, minor)
}

func (k *Kernel) holders(major, minor uint32) []Holder {
	key := devKey{major, minor}
	if k.links == nil {
		k.links = map[linkKey]uint64{}
	}
	for lk := range k.links {
		if lk.key == key && (lk.d.removed || !(lk.d.live.uses(key) || lk.d.inactive.uses(key))) {
			delete(k.links, lk)
		}
	}
	var out []Holder
	for _, d := range k.byMinor {
		if !d.live.uses(key) && !d.inactive.uses(key) {
			continue
		}
		lk := linkKey{d, key}
		id, ok := k.links[lk]
		if !ok {
			k.nextLink++
			id = k.nextLink
			k.links[lk] = id
		}
		out = append(out, Holder{Name: "dm-" + strconv.FormatUint(uint64(d.minor), 10), Minor: d.minor, Link: id, DevName: d.name, UUID: d.uuid})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Minor < out[j].Minor })
	return out
}

// DeviceName is /sys/dev/block/major:minor/dm/name: the name of dm device
// major:minor, or ENOENT.
func (k *Kernel) DeviceName(major, minor uint32) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.dmDevice(devKey{major, minor})
	if d == nil {
		return "", unix.ENOENT
	}
	return d.name, nil
}

// HoldersStamp is what a stat of the holders directory of major:minor
// tells: a number that changes whenever its entries (Holders) change.
//
// Differs from the kernel: the kernel stamps the directory with the time
// of each change (once its times have been set); the fake compares the
// entries with those of the previous call.
func (k *Kernel) HoldersStamp(major, minor uint32) uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for _, h := range k.holders(major, minor) {
		fmt.Fprintf(&b, "%d/%d ", h.Minor, h.Link)
	}
	key := devKey{major, minor}
	if k.stamps == nil {
		k.stamps = map[devKey]holderStamp{}
	}
	st := k.stamps[key]
	if st.set != b.String() {
		k.nextLink++
		st = holderStamp{set: b.String(), n: k.nextLink}
		k.stamps[key] = st
	}
	return st.n
}

type holderStamp struct {
	set string
	n   uint64
}
