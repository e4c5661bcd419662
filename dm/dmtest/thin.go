package dmtest

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// PoolMode is a thin pool's enum pool_mode, in the kernel's order of
// degradation.
type PoolMode int

// Pool modes. Status prints PoolOutOfMetadataSpace and PoolReadOnly both
// as "ro", and PoolFail as the whole line "Fail".
const (
	PoolWrite              PoolMode = iota // PM_WRITE: "rw"
	PoolOutOfDataSpace                     // PM_OUT_OF_DATA_SPACE: "out_of_data_space"
	PoolOutOfMetadataSpace                 // PM_OUT_OF_METADATA_SPACE: "ro"
	PoolReadOnly                           // PM_READ_ONLY: "ro"
	PoolFail                               // PM_FAIL: "Fail"
)

// String returns the name of m.
func (m PoolMode) String() string {
	switch m {
	case PoolWrite:
		return "rw"
	case PoolOutOfDataSpace:
		return "out_of_data_space"
	case PoolOutOfMetadataSpace:
		return "out_of_metadata_space"
	case PoolReadOnly:
		return "ro"
	case PoolFail:
		return "Fail"
	}
	return fmt.Sprintf("PoolMode(%d)", int(m))
}

func (m PoolMode) readOnly() bool { return m == PoolOutOfMetadataSpace || m == PoolReadOnly }

// Limits of dm-thin.c and dm-space-map-metadata.h.
const (
	blockSizeMin     = 128     // DATA_DEV_BLOCK_SIZE_MIN_SECTORS
	blockSizeMax     = 2097152 // DATA_DEV_BLOCK_SIZE_MAX_SECTORS
	maxDevID         = 1<<24 - 1
	metaBlockSectors = 8                      // THIN_METADATA_BLOCK_SIZE
	metaMaxBlocks    = 255 * ((1 << 14) - 64) // DM_SM_METADATA_MAX_BLOCKS
	metaMaxSectors   = metaMaxBlocks * metaBlockSectors
	metaReserveMax   = 4096 // __set_metadata_reserve(): at most 16 MiB held back

	// Differs from the kernel: a guess at the metadata blocks a freshly
	// formatted pool uses, and at the cost of thins and mappings.
	metaBaseBlocks   = 10
	mappingsPerBlock = 126
)

// storeKey names where metadata lives on disk: a device and an offset, seen
// through linear dm devices, so that a pool rebuilt on a new linear over
// the same loop device finds its metadata again.
type storeKey struct {
	dev    devKey
	offset uint64
}

func (k *Kernel) resolveStore(key devKey) storeKey {
	var off uint64
	for i := 0; i < 16; i++ {
		d := k.dmDevice(key)
		if d == nil || d.live == nil || len(d.live.targets) == 0 {
			break
		}
		lc, ok := d.live.targets[0].state.(*linearTarget)
		if !ok {
			break
		}
		off += lc.start
		key = lc.dev
	}
	return storeKey{key, off}
}

// poolMetadata is the pool metadata on a metadata device (struct
// dm_pool_metadata and what it keeps on disk).
type poolMetadata struct {
	blockSize  uint64
	dataBlocks uint64 // the data device size in the superblock
	metaBlocks uint64 // the metadata space map size
	tid        uint64
	needsCheck bool
	heldRoot   uint64
	thins      map[uint32]*thinDev
	refs       map[uint64]uint32 // data block -> number of mappings to it
	cursor     uint64
	commits    uint64
}

// thinDev is a thin device in the metadata.
type thinDev struct {
	id        uint32
	maps      map[uint64]uint64 // virtual block -> data block
	own       int               // mappings made since creation, not inherited
	openCount int               // thin targets that opened it
	hint      uint64            // no virtual block below it is unmapped
}

func (m *poolMetadata) actualUsedMeta() uint64 {
	n := uint64(metaBaseBlocks)
	for _, td := range m.thins {
		n += 1 + uint64((td.own+mappingsPerBlock-1)/mappingsPerBlock)
	}
	if m.heldRoot != 0 {
		n++
	}
	return n
}

func (m *poolMetadata) actualFreeMeta() uint64 {
	u := m.actualUsedMeta()
	if u >= m.metaBlocks {
		return 0
	}
	return m.metaBlocks - u
}

// reportedFreeMeta is dm_pool_get_free_metadata_block_count(): free blocks
// less the reserve the kernel keeps for committing.
func (m *poolMetadata) reportedFreeMeta() uint64 {
	res := min(uint64(metaReserveMax), m.metaBlocks/10)
	f := m.actualFreeMeta()
	if f < res {
		return 0
	}
	return f - res
}

func (m *poolMetadata) usedData() uint64 { return uint64(len(m.refs)) }

func (m *poolMetadata) freeData() uint64 {
	if u := m.usedData(); u < m.dataBlocks {
		return m.dataBlocks - u
	}
	return 0
}

// poolFeatures is struct pool_features.
type poolFeatures struct {
	mode           PoolMode
	zero           bool
	discard        bool
	passdown       bool
	errorIfNoSpace bool
}

func defaultFeatures() poolFeatures {
	return poolFeatures{mode: PoolWrite, zero: true, discard: true, passdown: true}
}

// pool is struct pool: one per pool device, shared by its tables and the
// thin targets that use it, gone when the last of them is destroyed.
type pool struct {
	md                *device
	metaDev, dataDev  devKey
	meta              *poolMetadata
	spb               uint64 // sectors per block
	lowWater          uint64
	pf                poolFeatures
	ti                *target // the bound (live) pool target
	suspended         bool
	lowWaterTriggered bool
	refs              int
	metaValueSet      bool // the metadata threshold's last value was below it
	metaBelow         bool
}

func (k *Kernel) poolByMD(d *device) *pool {
	for _, pl := range k.pools {
		if pl.md == d {
			return pl
		}
	}
	return nil
}

func (k *Kernel) poolDec(pl *pool) {
	pl.refs--
	if pl.refs > 0 {
		return
	}
	for i, q := range k.pools {
		if q == pl {
			k.pools = append(k.pools[:i], k.pools[i+1:]...)
			break
		}
	}
}

// poolFind is __pool_find().
func (k *Kernel) poolFind(md *device, meta, data devKey, bs uint64, readOnly bool) (*pool, bool, error) {
	for _, pl := range k.pools {
		if pl.metaDev == meta {
			if pl.md != md {
				return nil, false, unix.EBUSY // "metadata device already in use by a pool"
			}
			if pl.dataDev != data {
				return nil, false, unix.EBUSY // "data device already in use by a pool"
			}
			pl.refs++
			return pl, false, nil
		}
	}
	if pl := k.poolByMD(md); pl != nil {
		if pl.metaDev != meta || pl.dataDev != data {
			return nil, false, unix.EINVAL // "different pool cannot replace a pool"
		}
		pl.refs++
		return pl, false, nil
	}
	m, err := k.openMetadata(meta, bs, !readOnly)
	if err != nil {
		return nil, false, err
	}
	pl := &pool{md: md, metaDev: meta, dataDev: data, meta: m, spb: bs,
		pf: defaultFeatures(), suspended: true, refs: 1}
	k.pools = append(k.pools, pl)
	return pl, true, nil
}

// openMetadata is dm_pool_metadata_open(): format a zeroed device (unless
// the pool is read-only: EPERM), or open the metadata on it, which must
// have been made with the same block size.
func (k *Kernel) openMetadata(dev devKey, bs uint64, format bool) (*poolMetadata, error) {
	sk := k.resolveStore(dev)
	if m := k.metadata[sk]; m != nil {
		if m.blockSize != bs {
			return nil, unix.EINVAL // "changing the data block size ... is not supported"
		}
		return m, nil
	}
	if !format {
		return nil, unix.EPERM
	}
	blocks := min(k.devSize(dev), metaMaxSectors) / metaBlockSectors
	if blocks <= metaBaseBlocks {
		// Differs from the kernel: a guess at the errno; the space map
		// bootstrap allocator runs out of blocks while formatting.
		return nil, unix.ENOSPC
	}
	m := &poolMetadata{blockSize: bs, metaBlocks: blocks,
		thins: map[uint32]*thinDev{}, refs: map[uint64]uint32{}}
	k.metadata[sk] = m
	return m, nil
}

// poolTarget is struct pool_c.
type poolTarget struct {
	pool                *pool
	metaDev, dataDev    devKey
	lowWater            uint64
	requested, adjusted poolFeatures
}

// poolCtr is pool_ctr():
// <metadata dev> <data dev> <block size> <low water mark> [<#features> <feature>...]
func poolCtr(k *Kernel, ti *target, argv []string) (targetState, error) {
	if len(argv) < 4 {
		return nil, unix.EINVAL
	}
	if argv[0] == argv[1] {
		return nil, unix.EINVAL // "Error setting metadata or data device"
	}
	pf := defaultFeatures()
	if err := parsePoolFeatures(argv[4:], &pf); err != nil {
		return nil, err
	}
	meta, err := k.getDevice(ti.table, argv[0])
	if err != nil {
		return nil, err
	}
	data, err := k.getDevice(ti.table, argv[1])
	if err != nil {
		return nil, err
	}
	bs, ok := kstrtoull(argv[2])
	if !ok || bs < blockSizeMin || bs > blockSizeMax || bs&(blockSizeMin-1) != 0 {
		return nil, unix.EINVAL // "Invalid block size"
	}
	lwm, ok := kstrtoull(argv[3])
	if !ok {
		return nil, unix.EINVAL // "Invalid low water mark"
	}
	pl, created, err := k.poolFind(ti.table.md, meta, data, bs, pf.mode == PoolReadOnly)
	if err != nil {
		return nil, err
	}
	if !created && pf.discard != pl.pf.discard {
		k.poolDec(pl)
		return nil, unix.EINVAL // "Discard support cannot be disabled once enabled"
	}
	// Differs from the kernel: pool_io_hints() turns discard passdown off
	// when the data device cannot discard; every fake device can.
	return &poolTarget{pool: pl, metaDev: meta, dataDev: data, lowWater: lwm,
		requested: pf, adjusted: pf}, nil
}

// parsePoolFeatures is parse_pool_features(): a count of at most 4 and
// that many known names, compared without case. Arguments after the group
// are ignored, as in the kernel.
func parsePoolFeatures(args []string, pf *poolFeatures) error {
	if len(args) == 0 {
		return nil
	}
	n, ok := kstrtouint(args[0])
	if !ok || n > 4 || int(n) > len(args)-1 {
		return unix.EINVAL
	}
	for _, a := range args[1 : 1+n] {
		switch {
		case asciiEqualFold(a, "skip_block_zeroing"):
			pf.zero = false
		case asciiEqualFold(a, "ignore_discard"):
			pf.discard = false
		case asciiEqualFold(a, "no_discard_passdown"):
			pf.passdown = false
		case asciiEqualFold(a, "read_only"):
			pf.mode = PoolReadOnly
		case asciiEqualFold(a, "error_if_no_space"):
			pf.errorIfNoSpace = true
		default:
			return unix.EINVAL // "Unrecognised pool feature requested"
		}
	}
	return nil
}

func (pt *poolTarget) dtr(k *Kernel, ti *target) {
	if pt.pool.ti == ti {
		pt.pool.ti = nil
	}
	k.poolDec(pt.pool)
}

func (pt *poolTarget) areas(_ *Kernel, ti *target) []area {
	return []area{{pt.dataDev, 0, ti.len}}
}

func (pt *poolTarget) presuspend(_ *Kernel, _ *target) { pt.pool.suspended = true }

func (pt *poolTarget) postsuspend(k *Kernel, _ *target) { k.commit(pt.pool) }

// preresume is pool_preresume(): bind this target to the pool, then grow
// the data and metadata sizes recorded in the superblock to the table's
// length and the metadata device's size. A table smaller than the recorded
// data size is EINVAL ("pool target too small").
func (pt *poolTarget) preresume(k *Kernel, ti *target) error {
	pl := pt.pool
	// bind_control_target()
	oldMode, newMode := pl.pf.mode, pt.adjusted.mode
	pt.adjusted.mode = oldMode
	pl.ti = ti
	pl.pf = pt.adjusted
	pl.lowWater = pt.lowWater
	k.setPoolMode(pl, newMode)

	m := pl.meta
	commit := false
	err := func() error {
		// maybe_resize_data_dev()
		blocks := ti.len / pl.spb
		if blocks < m.dataBlocks {
			return unix.EINVAL
		}
		if blocks > m.dataBlocks && !m.needsCheck {
			m.dataBlocks = blocks
			commit = true
		}
		// maybe_resize_metadata_dev()
		mblocks := min(k.devSize(pl.metaDev), metaMaxSectors) / metaBlockSectors
		if mblocks < m.metaBlocks {
			return unix.EINVAL
		}
		if mblocks > m.metaBlocks && !m.needsCheck {
			if pl.pf.mode == PoolOutOfMetadataSpace {
				k.setPoolMode(pl, PoolWrite)
			}
			m.metaBlocks = mblocks
			commit = true
		}
		return nil
	}()
	if err == nil && commit {
		k.commit(pl)
	}
	if err != nil && pl.pf.mode == PoolFail {
		err = nil
	}
	return err
}

// resume is pool_resume(): the low water mark can fire again.
func (pt *poolTarget) resume(_ *Kernel, _ *target) {
	pt.pool.lowWaterTriggered = false
	pt.pool.suspended = false
}

// status is pool_status().
func (pt *poolTarget) status(k *Kernel, ti *target, typ statusType, noflush bool) string {
	pl := pt.pool
	m := pl.meta
	switch typ {
	case statusInfo:
		if pl.pf.mode == PoolFail {
			return "Fail"
		}
		if !noflush && !ti.table.md.suspended {
			k.commit(pl)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d %d/%d %d/%d ", m.tid,
			m.metaBlocks-m.reportedFreeMeta(), m.metaBlocks,
			m.usedData(), m.dataBlocks)
		if m.heldRoot != 0 {
			fmt.Fprintf(&b, "%d ", m.heldRoot)
		} else {
			b.WriteString("- ")
		}
		switch {
		case pl.pf.mode == PoolOutOfDataSpace:
			b.WriteString("out_of_data_space ")
		case pl.pf.mode.readOnly():
			b.WriteString("ro ")
		default:
			b.WriteString("rw ")
		}
		switch {
		case !pl.pf.discard:
			b.WriteString("ignore_discard ")
		case pl.pf.passdown:
			b.WriteString("discard_passdown ")
		default:
			b.WriteString("no_discard_passdown ")
		}
		if pl.pf.errorIfNoSpace {
			b.WriteString("error_if_no_space ")
		} else {
			b.WriteString("queue_if_no_space ")
		}
		if m.needsCheck {
			b.WriteString("needs_check ")
		} else {
			b.WriteString("- ")
		}
		fmt.Fprintf(&b, "%d ", k.metaThreshold(pt))
		return b.String()
	case statusTable:
		return fmt.Sprintf("%s %s %d %d ", pt.metaDev, pt.dataDev, pl.spb, pt.lowWater) + emitFlags(pt.requested)
	}
	return ""
}

// emitFlags is emit_flags(): the requested features, each followed by a
// space.
func emitFlags(pf poolFeatures) string {
	var names []string
	if !pf.zero {
		names = append(names, "skip_block_zeroing")
	}
	if !pf.discard {
		names = append(names, "ignore_discard")
	}
	if !pf.passdown {
		names = append(names, "no_discard_passdown")
	}
	if pf.mode == PoolReadOnly {
		names = append(names, "read_only")
	}
	if pf.errorIfNoSpace {
		names = append(names, "error_if_no_space")
	}
	s := fmt.Sprintf("%d ", len(names))
	for _, n := range names {
		s += n + " "
	}
	return s
}

// metaThreshold is calc_metadata_threshold(): a quarter of the metadata
// device, at most 1024 blocks (4 MiB).
func (k *Kernel) metaThreshold(pt *poolTarget) uint64 {
	quarter := min(k.devSize(pt.metaDev), metaMaxSectors) / metaBlockSectors / 4
	return min(1024, quarter)
}

// setPoolMode is set_pool_mode(): a pool that needs checking never goes
// back to write mode, a failed pool never leaves Fail, and every change is
// a dm event on the pool device.
func (k *Kernel) setPoolMode(pl *pool, mode PoolMode) {
	old := pl.pf.mode
	if mode == PoolWrite && pl.meta.needsCheck {
		if old != mode {
			mode = old
		} else {
			mode = PoolReadOnly
		}
	}
	if old == PoolFail {
		mode = old
	}
	var pt *poolTarget
	if pl.ti != nil {
		pt, _ = pl.ti.state.(*poolTarget)
	}
	if mode == PoolWrite && pt != nil {
		pl.pf.errorIfNoSpace = pt.requested.errorIfNoSpace
	}
	pl.pf.mode = mode
	if pt != nil {
		pt.adjusted.mode = mode
	}
	if old != mode {
		k.poolEvent(pl)
	}
}

// poolEvent is dm_table_event(pool->ti->table).
func (k *Kernel) poolEvent(pl *pool) {
	if pl.ti != nil && !pl.md.removed {
		k.deviceEvent(pl.md)
	}
}

// commit is commit(): refused in read-only modes; afterwards the pool may
// leave out-of-data-space mode or enter out-of-metadata-space mode.
func (k *Kernel) commit(pl *pool) error {
	if pl.pf.mode >= PoolOutOfMetadataSpace {
		return unix.EINVAL
	}
	pl.meta.commits++
	// check_for_metadata_space()
	if pl.meta.reportedFreeMeta() == 0 && !pl.pf.mode.readOnly() {
		k.setPoolMode(pl, PoolOutOfMetadataSpace)
	}
	// check_for_data_space()
	if pl.pf.mode == PoolOutOfDataSpace && pl.meta.freeData() > 0 {
		k.setPoolMode(pl, PoolWrite)
	}
	return nil
}

// metaAlloc accounts for n new metadata blocks: ENOSPC when the space map
// has none left; the metadata low watermark fires when free space drops to
// it (edge-triggered).
func (k *Kernel) metaAlloc(pl *pool, n uint64) error {
	if pl.meta.actualFreeMeta() < n {
		return unix.ENOSPC
	}
	return nil
}

// checkMetaThreshold is the space map's check_threshold(), run after
// metadata was allocated.
func (k *Kernel) checkMetaThreshold(pl *pool) {
	pt, _ := func() (*poolTarget, bool) {
		if pl.ti == nil {
			return nil, false
		}
		p, ok := pl.ti.state.(*poolTarget)
		return p, ok
	}()
	if pt == nil {
		return
	}
	free := pl.meta.actualFreeMeta()
	below := free <= k.metaThreshold(pt)
	if below && (!pl.metaValueSet || !pl.metaBelow) {
		k.poolEvent(pl) // metadata_low_callback()
	}
	pl.metaValueSet = true
	pl.metaBelow = below
}

// message is pool_message().
func (pt *poolTarget) message(k *Kernel, _ *target, argv []string) (string, bool, error) {
	pl := pt.pool
	if pl.pf.mode >= PoolOutOfMetadataSpace {
		return "", false, unix.EOPNOTSUPP
	}
	var err error = unix.EINVAL // "Unrecognised thin pool target message received"
	switch {
	case asciiEqualFold(argv[0], "create_thin"):
		err = k.msgCreateThin(pl, argv)
	case asciiEqualFold(argv[0], "create_snap"):
		err = k.msgCreateSnap(pl, argv)
	case asciiEqualFold(argv[0], "delete"):
		err = k.msgDelete(pl, argv)
	case asciiEqualFold(argv[0], "set_transaction_id"):
		err = k.msgSetTransactionID(pl, argv)
	case asciiEqualFold(argv[0], "reserve_metadata_snap"):
		err = k.msgReserveMetadataSnap(pl, argv)
	case asciiEqualFold(argv[0], "release_metadata_snap"):
		err = k.msgReleaseMetadataSnap(pl, argv)
	}
	if err == nil {
		k.commit(pl)
	}
	return "", false, err
}

// readDevID is read_dev_id(): a decimal number of at most 24 bits.
func readDevID(s string) (uint32, error) {
	v, ok := kstrtoull(s)
	if !ok || v > maxDevID {
		return 0, unix.EINVAL
	}
	return uint32(v), nil
}

func (k *Kernel) msgCreateThin(pl *pool, argv []string) error {
	if len(argv) != 2 {
		return unix.EINVAL
	}
	id, err := readDevID(argv[1])
	if err != nil {
		return err
	}
	m := pl.meta
	if m.thins[id] != nil {
		return unix.EEXIST
	}
	if err := k.metaAlloc(pl, 1); err != nil {
		return err
	}
	m.thins[id] = &thinDev{id: id, maps: map[uint64]uint64{}}
	k.checkMetaThreshold(pl)
	return nil
}

func (k *Kernel) msgCreateSnap(pl *pool, argv []string) error {
	if len(argv) != 3 {
		return unix.EINVAL
	}
	id, err := readDevID(argv[1])
	if err != nil {
		return err
	}
	origin, err := readDevID(argv[2])
	if err != nil {
		return err
	}
	m := pl.meta
	if m.thins[id] != nil {
		return unix.EEXIST
	}
	o := m.thins[origin]
	if o == nil {
		return unix.ENODATA
	}
	if err := k.metaAlloc(pl, 1); err != nil {
		return err
	}
	td := &thinDev{id: id, maps: make(map[uint64]uint64, len(o.maps)), hint: o.hint}
	for v, b := range o.maps {
		td.maps[v] = b
		m.refs[b]++
	}
	m.thins[id] = td
	k.checkMetaThreshold(pl)
	return nil
}

func (k *Kernel) msgDelete(pl *pool, argv []string) error {
	if len(argv) != 2 {
		return unix.EINVAL
	}
	id, err := readDevID(argv[1])
	if err != nil {
		return err
	}
	m := pl.meta
	td := m.thins[id]
	if td == nil {
		return unix.ENODATA
	}
	if td.openCount > 0 {
		return unix.EBUSY
	}
	for _, b := range td.maps {
		m.unref(b)
	}
	delete(m.thins, id)
	return nil
}

func (m *poolMetadata) unref(b uint64) {
	if m.refs[b] <= 1 {
		delete(m.refs, b)
	} else {
		m.refs[b]--
	}
}

func (k *Kernel) msgSetTransactionID(pl *pool, argv []string) error {
	if len(argv) != 3 {
		return unix.EINVAL
	}
	old, ok1 := kstrtoull(argv[1])
	next, ok2 := kstrtoull(argv[2])
	if !ok1 || !ok2 {
		return unix.EINVAL
	}
	if pl.meta.tid != old {
		return unix.EINVAL
	}
	pl.meta.tid = next
	return nil
}

func (k *Kernel) msgReserveMetadataSnap(pl *pool, argv []string) error {
	if len(argv) != 1 {
		return unix.EINVAL
	}
	k.commit(pl)
	m := pl.meta
	if m.heldRoot != 0 {
		return unix.EBUSY
	}
	if err := k.metaAlloc(pl, 1); err != nil {
		return err
	}
	// The held root is the block the superblock was copied to.
	m.heldRoot = m.actualUsedMeta()
	k.checkMetaThreshold(pl)
	return nil
}

func (k *Kernel) msgReleaseMetadataSnap(pl *pool, argv []string) error {
	if len(argv) != 1 {
		return unix.EINVAL
	}
	if pl.meta.heldRoot == 0 {
		return unix.EINVAL
	}
	pl.meta.heldRoot = 0
	return nil
}

// thinTarget is struct thin_c.
type thinTarget struct {
	pool    *pool
	poolDev devKey
	origin  *devKey
	id      uint32
	td      *thinDev
}

// thinCtr is thin_ctr(): <pool dev> <dev id> [<external origin dev>].
func thinCtr(k *Kernel, ti *target, argv []string) (targetState, error) {
	if len(argv) != 2 && len(argv) != 3 {
		return nil, unix.EINVAL
	}
	tc := &thinTarget{}
	if len(argv) == 3 {
		if argv[0] == argv[2] {
			return nil, unix.EINVAL // "Error setting origin device"
		}
		o, err := k.getDevice(ti.table, argv[2])
		if err != nil {
			return nil, err
		}
		tc.origin = &o
	}
	pd, err := k.getDevice(ti.table, argv[0])
	if err != nil {
		return nil, err
	}
	tc.poolDev = pd
	if tc.id, err = readDevID(argv[1]); err != nil {
		return nil, err // "Invalid device id"
	}
	pmd := k.dmDevice(pd)
	if pmd == nil {
		return nil, unix.EINVAL // "Couldn't get pool mapped device"
	}
	pl := k.poolByMD(pmd)
	if pl == nil {
		return nil, unix.EINVAL // "Couldn't find pool object"
	}
	pl.refs++
	if pl.pf.mode == PoolFail {
		k.poolDec(pl)
		return nil, unix.EINVAL // "Couldn't open thin device, Pool is in fail mode"
	}
	td := pl.meta.thins[tc.id]
	if td == nil {
		k.poolDec(pl)
		return nil, unix.ENODATA // "Couldn't open thin internal device"
	}
	if pl.suspended {
		k.poolDec(pl)
		return nil, unix.EINVAL // "Unable to activate thin device while pool is suspended"
	}
	td.openCount++
	tc.pool, tc.td = pl, td
	return tc, nil
}

func (tc *thinTarget) dtr(k *Kernel, _ *target) {
	tc.td.openCount--
	k.poolDec(tc.pool)
}

// status is thin_status().
func (tc *thinTarget) status(_ *Kernel, _ *target, typ statusType, _ bool) string {
	pl := tc.pool
	if pl.pf.mode == PoolFail {
		return "Fail"
	}
	switch typ {
	case statusInfo:
		mapped := uint64(len(tc.td.maps))
		s := fmt.Sprintf("%d ", mapped*pl.spb)
		if mapped == 0 {
			return s + "-"
		}
		return s + fmt.Sprintf("%d", (tc.td.highest()+1)*pl.spb-1)
	case statusTable:
		s := fmt.Sprintf("%s %d", tc.poolDev, tc.id)
		if tc.origin != nil {
			s += " " + tc.origin.String()
		}
		return s
	}
	return ""
}

func (td *thinDev) highest() uint64 {
	var h uint64
	for v := range td.maps {
		h = max(h, v)
	}
	return h
}

// areas is thin_iterate_devices(): the pool's data area on the pool
// device, once a pool target is bound.
func (tc *thinTarget) areas(_ *Kernel, _ *target) []area {
	pl := tc.pool
	if pl.ti == nil {
		return nil
	}
	if blocks := pl.ti.len / pl.spb; blocks > 0 {
		return []area{{tc.poolDev, 0, pl.spb * blocks}}
	}
	return nil
}

// poolNamed finds the pool object of the named pool device.
func (k *Kernel) poolNamed(name string) (*pool, error) {
	d := k.byName[name]
	if d == nil {
		return nil, unix.ENXIO
	}
	pl := k.poolByMD(d)
	if pl == nil {
		return nil, fmt.Errorf("dmtest: %s is not a thin pool: %w", name, unix.EINVAL)
	}
	return pl, nil
}

// ProvisionBlocks writes to n unprovisioned blocks of thin device thinID
// in the named pool, as I/O through an active thin would: each takes a
// free data block (alloc_data_block()). The data low water mark fires once
// free blocks are at or below it (once per resume); with no free block
// left the pool switches to out-of-data-space mode and the write fails
// with ENOSPC. A write in a read-only or failed pool fails with EIO, and
// one that needs a metadata block when none is left aborts the transaction:
// needs_check is set and the pool goes read-only.
//
// Differs from the kernel: in queue_if_no_space mode the kernel holds the
// I/O; the fake fails it at once with ENOSPC.
func (k *Kernel) ProvisionBlocks(poolName string, thinID uint32, n uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	pl, err := k.poolNamed(poolName)
	if err != nil {
		return err
	}
	if pl.ti == nil {
		return fmt.Errorf("dmtest: pool %s is not active: %w", poolName, unix.ENXIO)
	}
	m := pl.meta
	td := m.thins[thinID]
	if td == nil {
		return unix.ENODATA
	}
	for i := uint64(0); i < n; i++ {
		switch pl.pf.mode {
		case PoolWrite:
		case PoolOutOfDataSpace:
			return unix.ENOSPC
		default:
			return unix.EIO
		}
		// alloc_data_block()
		free := m.freeData()
		if free <= pl.lowWater && !pl.lowWaterTriggered {
			pl.lowWaterTriggered = true
			k.poolEvent(pl)
		}
		if free == 0 {
			k.commit(pl)
			if m.freeData() == 0 {
				k.setPoolMode(pl, PoolOutOfDataSpace)
				return unix.ENOSPC
			}
		}
		if td.own%mappingsPerBlock == 0 && m.reportedFreeMeta() == 0 {
			// metadata_operation_failed(): abort, needs_check, read-only.
			m.needsCheck = true
			k.setPoolMode(pl, PoolReadOnly)
			return unix.EIO
		}
		b := m.allocData()
		v := td.hint
		for _, ok := td.maps[v]; ok; _, ok = td.maps[v] {
			v++
		}
		td.maps[v] = b
		td.hint = v + 1
		td.own++
		m.refs[b]++
		k.checkMetaThreshold(pl)
	}
	return nil
}

// allocData takes the next free data block; the caller checked there is
// one.
func (m *poolMetadata) allocData() uint64 {
	for i := uint64(0); i < m.dataBlocks; i++ {
		b := (m.cursor + i) % m.dataBlocks
		if m.refs[b] == 0 {
			m.cursor = b + 1
			return b
		}
	}
	panic("dmtest: no free data block")
}

// DiscardBlocks discards the n highest mapped blocks of thin device thinID,
// as a discard through an active thin would: the mappings go, and data
// blocks no other thin shares are freed, which takes a pool out of
// out-of-data-space mode. A pool with ignore_discard refuses with
// EOPNOTSUPP; a failed pool with EIO.
func (k *Kernel) DiscardBlocks(poolName string, thinID uint32, n uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	pl, err := k.poolNamed(poolName)
	if err != nil {
		return err
	}
	if pl.ti == nil {
		return fmt.Errorf("dmtest: pool %s is not active: %w", poolName, unix.ENXIO)
	}
	if !pl.pf.discard {
		return unix.EOPNOTSUPP
	}
	switch {
	case pl.pf.mode == PoolFail:
		return unix.EIO
	case pl.pf.mode.readOnly():
		return nil // process_discard_bio in read-only mode: success, nothing done
	}
	m := pl.meta
	td := m.thins[thinID]
	if td == nil {
		return unix.ENODATA
	}
	vs := make([]uint64, 0, len(td.maps))
	for v := range td.maps {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i] > vs[j] })
	for i := uint64(0); i < n && i < uint64(len(vs)); i++ {
		v := vs[i]
		m.unref(td.maps[v])
		delete(td.maps, v)
		td.hint = min(td.hint, v)
		if td.own > 0 {
			td.own--
		}
	}
	k.commit(pl)
	return nil
}

// SetPoolMode switches the named pool's mode as set_pool_mode() does (a
// pool that needs checking does not go back to write mode, a failed one
// stays failed) and raises a dm event if the mode changed. The pool must be
// active.
func (k *Kernel) SetPoolMode(poolName string, mode PoolMode) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	pl, err := k.poolNamed(poolName)
	if err != nil {
		return err
	}
	if pl.ti == nil {
		return fmt.Errorf("dmtest: pool %s is not active: %w", poolName, unix.ENXIO)
	}
	k.setPoolMode(pl, mode)
	return nil
}

// FailPool puts the named pool in Fail mode, as a failed metadata rollback
// does: its status and its thins' status become "Fail", messages are
// EOPNOTSUPP and thins can no longer be loaded.
func (k *Kernel) FailPool(poolName string) error { return k.SetPoolMode(poolName, PoolFail) }

// SetNeedsCheck sets or clears the needs_check flag in the named pool's
// metadata, as a failed metadata operation (or thin_check
// --clear-needs-check-flag, offline) does. It does not change the mode:
// the next resume does.
func (k *Kernel) SetNeedsCheck(poolName string, v bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	pl, err := k.poolNamed(poolName)
	if err != nil {
		return err
	}
	pl.meta.needsCheck = v
	return nil
}

// ExpireNoSpaceTimeout is do_no_space_timeout(): a pool that has been out
// of data space in queue mode for no_space_timeout seconds starts failing
// I/O, and its status says error_if_no_space until it leaves the mode.
func (k *Kernel) ExpireNoSpaceTimeout(poolName string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	pl, err := k.poolNamed(poolName)
	if err != nil {
		return err
	}
	if pl.pf.mode == PoolOutOfDataSpace && !pl.pf.errorIfNoSpace {
		pl.pf.errorIfNoSpace = true
		k.poolEvent(pl)
	}
	return nil
}
