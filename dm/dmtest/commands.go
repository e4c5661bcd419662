package dmtest

import (
	"strings"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/ioctl"
)

// Sizes of the chained payload records, as dm-ioctl.c computes them.
const (
	nameListName  = 12 // offsetof(struct dm_name_list, name)
	versionsName  = 16 // sizeof(struct dm_target_versions)
	targetSpecLen = ioctl.SizeofTargetSpec
	targetMsgLen  = 8 // offsetof(struct dm_target_msg, message)
	depsHeader    = 8 // offsetof(struct dm_target_deps, dev)
)

// removeAll is remove_all(): remove every device nobody holds open, marking
// the others for deferred removal when asked to. Nothing but the version
// goes back: it sets data_size to 0.
func (k *Kernel) removeAll(p *param, _ int) (int, error) {
	mark := p.has(ioctl.FlagDeferredRemove)
	for {
		progress := false
		for _, d := range k.sortedDevices() {
			if k.openCount(d) > 0 {
				if mark {
					d.deferred = true
				}
				continue
			}
			k.hashRemove(d)
			progress = true
			break
		}
		if !progress {
			break
		}
	}
	k.deferredRemove()
	p.setDataSize(0)
	return 0, nil
}

// listDevices is list_devices().
func (k *Kernel) listDevices(p *param, paramSize int) (int, error) {
	extended := k.version.Has(ioctl.FeatureNameListEventNr) // event_nr and flags after the name
	filtered := k.version.Has(ioctl.FeatureNameListUUID)    // prefix filters, uuids
	withUUID := filtered && p.has(ioctl.FlagUUID)
	pfxName := cstr(p.b[offName : offName+ioctl.NameLen])
	pfxUUID := cstr(p.b[offUUID : offUUID+ioctl.UUIDLen])

	var ds []*device
	needed := 0
	for _, d := range k.sortedDevices() {
		if filtered && (!strings.HasPrefix(d.name, pfxName) || !strings.HasPrefix(d.uuid, pfxUUID)) {
			continue
		}
		ds = append(ds, d)
		needed += align8(nameListName + len(d.name) + 1)
		if extended {
			needed += align8(8)
		}
		if withUUID && d.uuid != "" {
			needed += align8(len(d.uuid) + 1)
		}
	}

	off, n := p.resultBuffer(paramSize)
	if n < needed || n < 8 {
		p.orFlags(ioctl.FlagBufferFull)
		return 0, nil
	}
	p.setDataSize(off + needed)
	ne.PutUint64(p.b[off:], 0) // "Flags no data"

	nl, old := off, -1
	for _, d := range ds {
		if old >= 0 {
			ne.PutUint32(p.b[old+8:], uint32(nl-old))
		}
		ne.PutUint64(p.b[nl:], ioctl.Dev{Major: k.major, Minor: d.minor}.Encode())
		ne.PutUint32(p.b[nl+8:], 0)
		copy(p.b[nl+nameListName:], d.name)
		p.b[nl+nameListName+len(d.name)] = 0
		old = nl
		next := align8(nl + nameListName + len(d.name) + 1)
		if extended {
			ev := next
			ne.PutUint32(p.b[ev:], d.eventNr)
			next = align8(ev + 8)
			if filtered {
				var f uint32
				if withUUID {
					if d.uuid != "" {
						f |= ioctl.NameListHasUUID
						copy(p.b[next:], d.uuid)
						p.b[next+len(d.uuid)] = 0
						next = align8(next + len(d.uuid) + 1)
					} else {
						f |= ioctl.NameListNoUUID
					}
				}
				ne.PutUint32(p.b[ev+4:], f)
			}
		}
		nl = next
	}
	return 0, nil
}

// devCreate is dev_create().
func (k *Kernel) devCreate(p *param, _ int) (int, error) {
	name := p.name()
	// check_name(). Differs from the kernel: none; 6.1 does not refuse
	// "control", "." or "..", which newer kernels do.
	if strings.Contains(name, "/") {
		return 0, unix.EINVAL
	}
	// dm_create(): a taken minor makes alloc_dev() fail, which dm_create()
	// reports as ENXIO, before the name is even looked at.
	var minor uint32
	if p.has(ioctl.FlagPersistentDev) {
		minor = ioctl.DecodeDev(p.dev()).Minor
		if k.byMinor[minor] != nil {
			return 0, unix.ENXIO
		}
	} else {
		for k.byMinor[minor] != nil {
			minor++
		}
	}
	// dm_hash_insert()
	if k.byName[name] != nil {
		return 0, unix.EBUSY
	}
	uuid := p.uuid()
	if uuid != "" && k.byUUID[uuid] != nil {
		return 0, unix.EBUSY
	}
	d := &device{name: name, uuid: uuid, minor: minor}
	k.byName[name] = d
	k.byMinor[minor] = d
	if uuid != "" {
		k.byUUID[uuid] = d
	}
	p.clearFlags(ioctl.FlagInactivePresent)
	k.devStatus(d, p)
	return 0, nil
}

// devRemove is dev_remove().
func (k *Kernel) devRemove(p *param, _ int) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	// dm_lock_for_deletion()
	if k.openCount(d) > 0 {
		if p.has(ioctl.FlagDeferredRemove) {
			d.deferred = true
			return 0, nil
		}
		return 0, unix.EBUSY
	}
	k.hashRemove(d)
	p.clearFlags(ioctl.FlagDeferredRemove)
	p.orFlags(ioctl.FlagUeventGenerated) // dm_kobject_uevent(KOBJ_REMOVE) succeeded
	k.deferredRemove()
	return 0, nil
}

// devRename is dev_rename() and dm_hash_rename().
func (k *Kernel) devRename(p *param, paramSize int) (int, error) {
	changeUUID := p.has(ioctl.FlagUUID)
	start := int(p.dataStart())
	if start < minDataSize {
		return 0, unix.EINVAL
	}
	s, ok := cstrAt(p.b, start, paramSize)
	max := ioctl.NameLen - 1
	if changeUUID {
		max = ioctl.UUIDLen - 1
	}
	if !ok || s == "" || len(s) > max {
		return 0, unix.EINVAL
	}
	if !changeUUID && strings.Contains(s, "/") {
		return 0, unix.EINVAL
	}
	// Is the new name or uuid free? This comes before the old device is
	// looked up, and the old device is looked up by name only.
	if changeUUID && k.byUUID[s] != nil || !changeUUID && k.byName[s] != nil {
		return 0, unix.EBUSY
	}
	d := k.byName[p.name()]
	if d == nil {
		return 0, unix.ENXIO
	}
	if changeUUID && d.uuid != "" {
		return 0, unix.EINVAL
	}
	if changeUUID {
		d.uuid = s
		k.byUUID[s] = d
	} else {
		delete(k.byName, d.name)
		d.name = s
		k.byName[s] = d
	}
	if d.live != nil {
		k.deviceEvent(d) // "Wake up any dm event waiters."
	}
	p.orFlags(ioctl.FlagUeventGenerated)
	k.devStatus(d, p)
	return 0, nil
}

// devSuspend is dev_suspend(): suspend with DM_SUSPEND_FLAG, else resume.
func (k *Kernel) devSuspend(p *param, _ int) (int, error) {
	if p.has(ioctl.FlagSuspend) {
		return k.doSuspend(p)
	}
	return k.doResume(p)
}

func (k *Kernel) doSuspend(p *param) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	if !d.suspended {
		k.suspend(d)
	}
	k.devStatus(d, p)
	return 0, nil
}

// suspend is dm_suspend(): presuspend the live targets, stop I/O,
// postsuspend them.
//
// Differs from the kernel: DM_NOFLUSH_FLAG and DM_SKIP_LOCKFS_FLAG change
// nothing, there being no I/O; and a device that is internally suspended
// (a thin whose pool is suspended) does not make the caller wait.
func (k *Kernel) suspend(d *device) {
	if d.live != nil {
		for _, ti := range d.live.targets {
			if s, ok := ti.state.(presuspender); ok {
				s.presuspend(k, ti)
			}
		}
	}
	d.suspended = true
	if d.live != nil {
		for _, ti := range d.live.targets {
			if s, ok := ti.state.(postsuspender); ok {
				s.postsuspend(k, ti)
			}
		}
	}
}

// doResume is do_resume(): swap the inactive table in (suspending first if
// needed), then resume. A table whose devices are too small fails the swap:
// the device stays suspended with the old table live and the new one gone.
// A target that refuses to resume (a pool reloaded smaller than its data)
// leaves the device suspended with the new table live.
func (k *Kernel) doResume(p *param) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	newMap := d.inactive
	d.inactive = nil
	p.clearFlags(ioctl.FlagInactivePresent)

	var oldMap *table
	if newMap != nil {
		if !d.suspended {
			k.suspend(d)
		}
		// dm_swap_table()
		if err := k.validateAreas(newMap, d.live); err != nil {
			k.destroyTable(newMap)
			k.deferredRemove()
			return 0, err
		}
		oldSize := d.live.size()
		oldMap = d.live
		d.live = newMap
		d.immutable = newMap.immutable
		if newMap.size() != oldSize {
			d.geometry = Geometry{}
		}
		d.readOnly = newMap.readOnly
		k.issueGlobalEvent()
	}

	var err error
	if d.suspended {
		if err = k.resume(d); err == nil {
			p.orFlags(ioctl.FlagUeventGenerated)
			// Differs from the kernel: a guess. The thin-provisioning
			// documentation says that resuming a device always triggers
			// an event; the fake raises one on every resume that
			// actually resumed the device.
			k.deviceEvent(d)
		}
	}
	k.destroyTable(oldMap)
	k.deferredRemove()
	if err != nil {
		return 0, err
	}
	k.devStatus(d, p)
	return 0, nil
}

// resume is dm_resume(): EINVAL without a live table of non-zero size,
// otherwise every target's preresume (the first failure stops it and the
// device stays suspended), then every target's resume.
func (k *Kernel) resume(d *device) error {
	if d.live == nil || d.live.size() == 0 {
		return unix.EINVAL
	}
	for _, ti := range d.live.targets {
		if r, ok := ti.state.(preresumer); ok {
			if err := r.preresume(k, ti); err != nil {
				return err
			}
		}
	}
	for _, ti := range d.live.targets {
		if r, ok := ti.state.(resumer); ok {
			r.resume(k, ti)
		}
	}
	d.suspended = false
	return nil
}

// devStatusCmd is dev_status().
func (k *Kernel) devStatusCmd(p *param, _ int) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	k.devStatus(d, p)
	return 0, nil
}

// devWait is dev_wait(): block until the device's event counter differs
// from event_nr, then report like DM_TABLE_STATUS.
func (k *Kernel) devWait(p *param, paramSize int) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	want := p.eventNr()
	gen := k.interrupts
	for d.eventNr == want {
		if k.interrupts != gen {
			return 0, unix.EINTR
		}
		k.cond.Wait()
	}
	k.devStatus(d, p)
	if t := d.tableFor(p); t != nil {
		k.retrieveStatus(t, p, paramSize)
	}
	return 0, nil
}

// tableFor is dm_get_live_or_inactive_table().
func (d *device) tableFor(p *param) *table {
	if p.has(ioctl.FlagQueryInactiveTable) {
		return d.inactive
	}
	return d.live
}

// tableLoad is table_load().
func (k *Kernel) tableLoad(p *param, paramSize int) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	t := &table{md: d, readOnly: p.has(ioctl.FlagReadOnly)}
	fail := func(err error) (int, error) {
		k.destroyTable(t)
		k.deferredRemove()
		return 0, err
	}
	if err := k.populateTable(t, p, paramSize); err != nil {
		return fail(err)
	}
	if d.immutable != nil && t.immutable != d.immutable && !t.hasWildcard() {
		return fail(unix.EINVAL)
	}
	if !d.diskAdded {
		// dm_setup_md_queue() on the first load computes the queue
		// limits, which checks every device area, and adds the disk.
		//
		// Differs from the kernel: a guess. After a failed first load
		// the next load is treated as a first load again.
		if err := k.validateAreas(t, nil); err != nil {
			return fail(err)
		}
		d.diskAdded = true
	}
	old := d.inactive
	d.inactive = t
	p.orFlags(ioctl.FlagInactivePresent)
	k.devStatus(d, p)
	k.destroyTable(old)
	k.deferredRemove()
	return 0, nil
}

func (t *table) hasWildcard() bool {
	for _, ti := range t.targets {
		if ti.tt.features&featWildcard != 0 {
			return true
		}
	}
	return false
}

// populateTable is populate_table() with the layout checks of current
// kernels.
//
// Differs from the kernel: Linux 6.1 (4.47) only requires each next to be
// at least sizeof(struct dm_target_spec) and the parameters to be
// NUL-terminated. Kernels from 6.5 on also refuse a first spec that
// overlaps the header, a next that is not 8-byte aligned, one that does not
// point past the previous spec's parameters, and one that leaves no room
// for a spec and a NUL. The fake applies the stricter rules, which every
// correct encoder meets.
func (k *Kernel) populateTable(t *table, p *param, paramSize int) error {
	count := p.u32(offTargetCount)
	if count == 0 {
		return unix.EINVAL
	}
	end := paramSize
	last := 0 // the first "previous spec" is the header itself
	next := uint64(p.dataStart())
	minSize := uint64(ioctl.SizeofHeader)
	for i := uint32(0); i < count; i++ {
		if next < minSize {
			return unix.EINVAL
		}
		// next_target()
		remaining := uint64(end - last)
		if remaining-targetSpecLen <= next {
			return unix.EINVAL
		}
		if next%8 != 0 {
			return unix.EINVAL
		}
		spec := last + int(next)
		params, ok := cstrAt(p.b, spec+targetSpecLen, end)
		if !ok {
			return unix.EINVAL
		}
		minSize = uint64(targetSpecLen + len(params) + 1)
		start := ne.Uint64(p.b[spec:])
		length := ne.Uint64(p.b[spec+8:])
		// target_type is read as a C string; a type without a NUL in its
		// 16 bytes runs on into the parameters, as it would in C.
		typ := cstr(p.b[spec+24 : end])
		if err := k.addTarget(t, typ, start, length, params); err != nil {
			return err
		}
		next = uint64(ne.Uint32(p.b[spec+20:]))
		last = spec
	}
	return nil
}

// addTarget is dm_table_add_target().
func (k *Kernel) addTarget(t *table, typ string, start, length uint64, params string) error {
	if t.singleton {
		return unix.EINVAL
	}
	if length == 0 {
		return unix.EINVAL
	}
	tt := k.targetType(typ)
	if tt == nil {
		return unix.EINVAL
	}
	if tt.features&featSingleton != 0 {
		if len(t.targets) > 0 {
			return unix.EINVAL
		}
		t.singleton = true
	}
	if tt.features&featAlwaysWriteable != 0 && t.readOnly {
		return unix.EINVAL
	}
	if t.immutable != nil {
		if t.immutable != tt {
			return unix.EINVAL
		}
	} else if tt.features&featImmutable != 0 {
		if len(t.targets) > 0 {
			return unix.EINVAL
		}
		t.immutable = tt
	}
	// adjoin(): the first target starts at 0, each next one where the
	// previous one ends.
	if len(t.targets) == 0 {
		if start != 0 {
			return unix.EINVAL
		}
	} else if prev := t.targets[len(t.targets)-1]; start != prev.begin+prev.len {
		return unix.EINVAL
	}
	ti := &target{begin: start, len: length, tt: tt, params: params, table: t}
	saved := t.devs
	st, err := tt.ctr(k, ti, splitArgs(params))
	if err != nil {
		t.devs = saved // dm_put_device() of what the constructor got
		return err
	}
	ti.state = st
	t.targets = append(t.targets, ti)
	return nil
}

// validateAreas is the device_area_is_invalid() pass of
// dm_calculate_queue_limits(): every region a target maps must lie inside
// its device. A device of size zero passes, as in the kernel. A table with
// no data devices keeps the live table's limits and is not checked.
func (k *Kernel) validateAreas(t, live *table) error {
	if len(t.devs) == 0 && live != nil {
		return nil
	}
	for _, ti := range t.targets {
		it, ok := ti.state.(areaIterator)
		if !ok {
			continue
		}
		for _, a := range it.areas(k, ti) {
			size := k.devSize(a.dev)
			if size == 0 {
				continue
			}
			if a.start >= size || a.start+a.len > size || a.start+a.len < a.start {
				return unix.EINVAL
			}
		}
	}
	return nil
}

// tableClear is table_clear().
func (k *Kernel) tableClear(p *param, _ int) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	old := d.inactive
	d.inactive = nil
	p.clearFlags(ioctl.FlagInactivePresent)
	k.devStatus(d, p)
	k.destroyTable(old)
	k.deferredRemove()
	return 0, nil
}

// tableDeps is table_deps() and retrieve_deps().
func (k *Kernel) tableDeps(p *param, paramSize int) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	k.devStatus(d, p)
	t := d.tableFor(p)
	if t == nil {
		return 0, nil
	}
	off, n := p.resultBuffer(paramSize)
	needed := depsHeader + 8*len(t.devs)
	if n < needed {
		p.orFlags(ioctl.FlagBufferFull)
		return 0, nil
	}
	ne.PutUint32(p.b[off:], uint32(len(t.devs))) // the padding word is left alone
	for i, dv := range t.devs {
		ne.PutUint64(p.b[off+depsHeader+8*i:], ioctl.Dev{Major: dv.major, Minor: dv.minor}.Encode())
	}
	p.setDataSize(off + needed)
	return 0, nil
}

// tableStatus is table_status().
func (k *Kernel) tableStatus(p *param, paramSize int) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	k.devStatus(d, p)
	if t := d.tableFor(p); t != nil {
		k.retrieveStatus(t, p, paramSize)
	}
	return 0, nil
}

// retrieveStatus is retrieve_status(): a dm_target_spec and a status (or
// table) string per target; next is relative to the data area; data_size
// ends at the last string's NUL; target_count is always the table's.
func (k *Kernel) retrieveStatus(t *table, p *param, paramSize int) {
	outbuf, length := p.resultBuffer(paramSize)
	typ := statusInfo
	switch {
	case p.has(ioctl.FlagStatusTable):
		typ = statusTable
	case p.has(ioctl.FlagIMAMeasurement):
		typ = statusIMA
	}
	noflush := p.has(ioctl.FlagNoFlush)
	out, used := 0, 0
	for _, ti := range t.targets {
		remaining := length - out
		if remaining <= targetSpecLen {
			p.orFlags(ioctl.FlagBufferFull)
			break
		}
		spec := outbuf + out
		ne.PutUint32(p.b[spec+16:], 0) // status
		ne.PutUint64(p.b[spec:], ti.begin)
		ne.PutUint64(p.b[spec+8:], ti.len)
		// strncpy(spec->target_type, name, 15): zero-padded to 15 bytes,
		// the 16th left as it was.
		tb := p.b[spec+24 : spec+24+ioctl.MaxTypeName-1]
		clear(tb)
		copy(tb, ti.tt.name)

		out += targetSpecLen
		remaining = length - out
		// The target prints into the rest of the buffer with DMEMIT,
		// which truncates and always leaves a NUL.
		s := ti.state.status(k, ti, typ, noflush)
		if len(s) > remaining-1 {
			s = s[:remaining-1]
		}
		copy(p.b[outbuf+out:], s)
		p.b[outbuf+out+len(s)] = 0
		l := len(s) + 1
		if l == remaining {
			p.orFlags(ioctl.FlagBufferFull)
			break
		}
		out += l
		used = outbuf + out
		out = align8(outbuf+out) - outbuf
		if out > length {
			p.orFlags(ioctl.FlagBufferFull)
			break
		}
		ne.PutUint32(p.b[spec+20:], uint32(out))
	}
	if used != 0 {
		p.setDataSize(used)
	}
	p.setU32(offTargetCount, uint32(len(t.targets)))
}

// listVersions is list_versions().
func (k *Kernel) listVersions(p *param, paramSize int) (int, error) {
	k.writeVersions(p, paramSize, k.types)
	return 0, nil
}

// getTargetVersion is get_target_version(): the target named in the
// header's name field; EINVAL if there is none by that name.
func (k *Kernel) getTargetVersion(p *param, paramSize int) (int, error) {
	tt := k.targetType(p.name())
	if tt == nil {
		return 0, unix.EINVAL
	}
	k.writeVersions(p, paramSize, []*targetType{tt})
	return 0, nil
}

// writeVersions is __list_versions(). Note that the kernel's size estimate
// adds 7 bytes of alignment slack per entry, unaligned, and reports all of
// it in data_size.
func (k *Kernel) writeVersions(p *param, paramSize int, types []*targetType) {
	needed := 0
	for _, tt := range types {
		needed += versionsName + len(tt.name) + 1 + 7
	}
	off, n := p.resultBuffer(paramSize)
	if n < needed {
		p.orFlags(ioctl.FlagBufferFull)
		return
	}
	p.setDataSize(off + needed)
	end := off + needed
	vers, old := off, -1
	for _, tt := range types {
		if vers+12+len(tt.name)+1 > end {
			p.orFlags(ioctl.FlagBufferFull)
			continue
		}
		if old >= 0 {
			ne.PutUint32(p.b[old:], uint32(vers-old))
		}
		for i := 0; i < 3; i++ {
			ne.PutUint32(p.b[vers+4+4*i:], tt.version[i])
		}
		ne.PutUint32(p.b[vers:], 0)
		copy(p.b[vers+versionsName:], tt.name)
		p.b[vers+versionsName+len(tt.name)] = 0
		old = vers
		vers = align8(vers + versionsName + len(tt.name) + 1)
	}
}

// targetMessage is target_message().
func (k *Kernel) targetMessage(p *param, paramSize int) (int, error) {
	tmsg := int(p.dataStart()) // read before get_result_buffer rewrites it
	result, maxlen := p.resultBuffer(paramSize)
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	if tmsg < minDataSize {
		return 0, unix.EINVAL
	}
	msg, ok := cstrAt(p.b, tmsg+targetMsgLen, paramSize)
	if !ok {
		return 0, unix.EINVAL
	}
	sector := ne.Uint64(p.b[tmsg:])
	argv := splitArgs(msg)
	if len(argv) == 0 {
		return 0, unix.EINVAL
	}

	r, out, err := k.messageForMD(d, argv)
	if err == nil && r == 2 {
		r, out, err = k.messageTarget(d, sector, argv)
	}
	if err != nil {
		return 0, err
	}
	k.devStatus(d, p)
	if r == 1 {
		p.orFlags(ioctl.FlagDataOut)
		if maxlen > 0 {
			if len(out) > maxlen-1 {
				out = out[:maxlen-1]
			}
			copy(p.b[result:], out)
			p.b[result+len(out)] = 0
		}
		// dm_message_test_buffer_overflow()
		if maxlen == 0 || len(out)+1 >= maxlen {
			p.orFlags(ioctl.FlagBufferFull)
		} else {
			p.setDataSize(result + len(out) + 1)
		}
		return 0, nil
	}
	// r == 2: no live table, so nobody took the message. ctl_ioctl hands
	// the 2 back to user space, where ioctl(2) "succeeds" with nothing
	// copied back but the version.
	return r, nil
}

// messageForMD is message_for_md(): '@' messages belong to dm core.
// It returns 2 for a message meant for the target.
//
// Differs from the kernel: of the @stats_* messages only @stats_list is
// known, and it lists no regions; the others are EINVAL.
func (k *Kernel) messageForMD(d *device, argv []string) (int, string, error) {
	if argv[0][0] != '@' {
		return 2, "", nil
	}
	switch {
	case asciiEqualFold(argv[0], "@cancel_deferred_remove"):
		if len(argv) != 1 {
			return 0, "", unix.EINVAL
		}
		d.deferred = false // dm_cancel_deferred_remove()
		return 0, "", nil
	case asciiEqualFold(argv[0], "@stats_list"):
		if len(argv) > 2 {
			return 0, "", unix.EINVAL
		}
		return 1, "", nil
	}
	return 0, "", unix.EINVAL
}

// messageTarget delivers a message to the live table's target at sector.
func (k *Kernel) messageTarget(d *device, sector uint64, argv []string) (int, string, error) {
	if d.live == nil {
		return 2, "", nil
	}
	ti := d.live.findTarget(sector)
	if ti == nil {
		return 0, "", unix.EINVAL
	}
	if k.msgHook != nil {
		spec := ioctl.TargetSpec{Start: ti.begin, Length: ti.len, Type: ti.tt.name, Params: ti.params}
		if out, dataOut, handled, err := k.msgHook(d.name, spec, argv); handled {
			if err != nil {
				return 0, "", err
			}
			if dataOut {
				return 1, out, nil
			}
			return 0, "", nil
		}
	}
	m, ok := ti.state.(messager)
	if !ok {
		return 0, "", unix.EINVAL
	}
	out, dataOut, err := m.message(k, ti, argv)
	if err != nil {
		return 0, "", err
	}
	if dataOut {
		return 1, out, nil
	}
	return 0, "", nil
}

// devSetGeometry is dev_set_geometry() and dm_set_geometry(). Nothing but
// the version goes back: it sets data_size to 0.
func (k *Kernel) devSetGeometry(p *param, paramSize int) (int, error) {
	d := k.findCell(p)
	if d == nil {
		return 0, unix.ENXIO
	}
	start := int(p.dataStart())
	if start < minDataSize {
		return 0, unix.EINVAL
	}
	s, ok := cstrAt(p.b, start, paramSize)
	if !ok {
		return 0, unix.EINVAL
	}
	// sscanf(geostr, "%lu %lu %lu %lu%c", ...) == 4
	var v [4]uint64
	rest := s
	for i := range v {
		rest = skipSpaces(rest)
		var ok bool
		if v[i], rest, ok = scanUint(rest); !ok {
			return 0, unix.EINVAL
		}
	}
	if rest != "" {
		return 0, unix.EINVAL
	}
	if v[0] > 65535 || v[1] > 255 || v[2] > 255 {
		return 0, unix.EINVAL
	}
	if v[3] > v[0]*v[1]*v[2] {
		return 0, unix.EINVAL // "Start sector is beyond the geometry limits."
	}
	d.geometry = Geometry{Cylinders: v[0], Heads: v[1], Sectors: v[2], Start: v[3]}
	p.setDataSize(0)
	return 0, nil
}

// devArmPoll is dev_arm_poll().
func (k *Kernel) devArmPoll(_ *param, _ int) (int, error) {
	k.armed = k.globalEvent
	return 0, nil
}

// asciiEqualFold is strcasecmp() == 0.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
