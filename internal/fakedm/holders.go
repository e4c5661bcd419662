package fakedm

import (
	"sort"
	"strconv"

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
