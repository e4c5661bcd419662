package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime/debug"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/examples/internal/size"
	"github.com/thinp/thinp/thin"
)

// deferredRemoveSince is the dm interface version that brought deferred
// removal (DM_DEFERRED_REMOVE, Linux 3.13).
var deferredRemoveSince = dm.Version{4, 27, 0}

// report is the status report: the devicemapper section of docker info,
// and a little more.
type report struct {
	PoolName                 string
	BlockSize                uint64 // bytes
	Mode                     thin.PoolMode
	TransactionID            uint64
	LowWaterMark             thin.DataBlocks
	NoSpace                  thin.NoSpacePolicy
	DataDevice, MetaDevice   string // /dev/loopN
	DataFile, MetaFile       string
	DataUsed, DataTotal      uint64 // bytes
	DataAvail                uint64 // bytes
	MetaUsed, MetaTotal      uint64 // bytes
	MetaAvail                uint64 // bytes
	UdevSync                 bool
	UdevReason               string
	DeferredRemoval          bool
	DeferredRemovalSupported bool
	DeferredDeletion         bool
	DeferredDeleted          int    // deletions waiting for their device to close
	BaseDeviceSize           uint64 // bytes: the size of a new volume
	MinFreeSpace             uint64 // bytes: below this much free data space, no new volume
	MinFreePercent           int
	Library                  string
	Interface                dm.Version
	PoolTarget               dm.Version
	Volumes                  []volumeReport
}

type volumeReport struct {
	Name   string // the dm device
	Key    string // in the catalog
	ID     thin.DeviceID
	Origin thin.DeviceID // 0: not a snapshot
	Size   uint64        // bytes
	Mapped uint64        // bytes
}

// report reads everything the report shows. The pool's status is read
// with a metadata commit, so the figures include every write so far.
func (d *demo) report(ctx context.Context) (report, error) {
	st, err := d.pool.Status(ctx, thin.CommitMetadata())
	if err != nil {
		return report{}, err
	}
	d.detail("pool status: %s", st)
	spec, err := d.pool.Spec(ctx)
	if err != nil {
		return report{}, err
	}
	target, err := d.ctl.TargetVersion(ctx, thin.PoolTargetType)
	if err != nil {
		return report{}, err
	}
	bs := d.pool.BlockSize().Bytes()
	sync, why := d.ctl.UdevStatus()
	r := report{
		PoolName:                 d.pool.Name(),
		BlockSize:                bs,
		Mode:                     st.Mode,
		TransactionID:            st.TransactionID,
		LowWaterMark:             spec.LowWaterMark,
		NoSpace:                  st.NoSpace,
		DataDevice:               d.data.Path(),
		MetaDevice:               d.meta.Path(),
		DataFile:                 d.dataFile,
		MetaFile:                 d.metaFile,
		DataUsed:                 st.DataUsedBytes(d.pool.BlockSize()),
		DataTotal:                st.DataTotalBytes(d.pool.BlockSize()),
		MetaUsed:                 st.MetaUsedBytes(),
		MetaTotal:                st.MetaTotalBytes(),
		UdevSync:                 sync,
		UdevReason:               why,
		DeferredRemoval:          d.cfg.deferred,
		DeferredRemovalSupported: d.ctl.Version().AtLeast(deferredRemoveSince),
		DeferredDeletion:         d.cat.Config().DeferredDeletion,
		DeferredDeleted:          len(d.cat.Deferred()),
		BaseDeviceSize:           d.cfg.volSize,
		MinFreePercent:           d.cat.Config().MinFreeSpace,
		Library:                  libraryVersion(),
		Interface:                d.ctl.Version(),
		PoolTarget:               target,
	}
	r.MinFreeSpace = st.DataTotalBytes(d.pool.BlockSize()) * uint64(r.MinFreePercent) / 100
	// As docker did: space in a pool on sparse files is only available
	// if the file system holding them has it.
	r.DataAvail = st.DataAvailableBytes(d.pool.BlockSize())
	r.MetaAvail = st.MetaAvailableBytes()
	if free, ok := fsFree(filepath.Dir(d.dataFile)); ok {
		r.DataAvail = min(r.DataAvail, free)
	}
	if free, ok := fsFree(filepath.Dir(d.metaFile)); ok {
		r.MetaAvail = min(r.MetaAvail, free)
	}
	for _, v := range []struct {
		vol *thin.Volume
		key string
	}{{d.origin, originKey}, {d.snap, snapKey}} {
		cv, err := d.cat.Get(v.key)
		if err != nil {
			return report{}, err
		}
		vs, err := v.vol.Status(ctx)
		if err != nil {
			return report{}, err
		}
		d.detail("%s status: %s", v.vol.Name(), vs)
		r.Volumes = append(r.Volumes, volumeReport{
			Name:   v.vol.Name(),
			ID:     v.vol.ID(),
			Key:    v.key,
			Origin: cv.ParentID,
			Size:   v.vol.Size().Bytes(),
			Mapped: vs.MappedSectors.Bytes(),
		})
	}
	return r, nil
}

// libraryVersion names this library and its version, as docker named
// libdevmapper's.
func libraryVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return modulePath + " " + moduleVersion(bi) + "; pure Go, no libdevmapper"
}

// modulePath is this library's module.
const modulePath = "github.com/thinp/thinp"

// moduleVersion is the version of modulePath that bi (the binary's build
// information; nil when it has none) says was built: the main module's
// version when the demo is built from the module itself ("v1.2.0" from
// go install ...@v1.2.0, or from a checkout at that tag; the go command
// stamps a checkout between tags with a pseudo-version), the dependency's
// (or its replacement's) when another module's program imports it. Where
// the go command had no version to give, "(devel)", the commit the build
// info records is named instead.
func moduleVersion(bi *debug.BuildInfo) string {
	if bi == nil {
		return "(unknown: the binary has no build information)"
	}
	var m *debug.Module
	if bi.Main.Path == modulePath {
		m = &bi.Main
	}
	for _, d := range bi.Deps {
		if m == nil && d.Path == modulePath {
			m = d
		}
	}
	if m == nil {
		return "(unknown: " + modulePath + " is not in the build information)"
	}
	if m.Replace != nil {
		if m.Replace.Version != "" {
			return m.Version + " => " + m.Replace.Path + " " + m.Replace.Version
		}
		return m.Version + " => " + m.Replace.Path
	}
	if m.Version != "" && m.Version != "(devel)" {
		return m.Version
	}
	var rev, when string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" || m != &bi.Main {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := "(devel) commit " + rev
	if when != "" {
		v += " of " + when
	}
	if modified {
		v += ", modified"
	}
	return v
}

// print writes the report: one " Key: value" line per field, as docker
// info did.
func (r report) print(w io.Writer) {
	line := func(k, format string, args ...any) {
		fmt.Fprintf(w, " %s: %s\n", k, fmt.Sprintf(format, args...))
	}
	fmt.Fprintln(w, "Storage Driver: devicemapper (thinp)")
	line("Pool Name", "%s", r.PoolName)
	line("Pool Blocksize", "%s", size.Human(r.BlockSize))
	line("Base Device Size", "%s", size.Human(r.BaseDeviceSize))
	line("Pool Mode", "%s", r.Mode)
	line("Transaction Id", "%d", r.TransactionID)
	line("Low Water Mark", "%d blocks (%s)", r.LowWaterMark, size.Human(uint64(r.LowWaterMark)*r.BlockSize))
	line("No Space Policy", "%s", r.NoSpace)
	line("Data file", "%s", r.DataDevice)
	line("Metadata file", "%s", r.MetaDevice)
	line("Data loop file", "%s", r.DataFile)
	line("Metadata loop file", "%s", r.MetaFile)
	line("Data Space Used", "%s", size.Human(r.DataUsed))
	line("Data Space Total", "%s", size.Human(r.DataTotal))
	line("Data Space Available", "%s", size.Human(r.DataAvail))
	line("Metadata Space Used", "%s", size.Human(r.MetaUsed))
	line("Metadata Space Total", "%s", size.Human(r.MetaTotal))
	line("Metadata Space Available", "%s", size.Human(r.MetaAvail))
	if r.UdevSync {
		line("Udev Sync Supported", "true")
	} else {
		line("Udev Sync Supported", "false (%s)", r.UdevReason)
	}
	line("Thin Pool Minimum Free Space", "%s (%d%%)", size.Human(r.MinFreeSpace), r.MinFreePercent)
	line("Deferred Removal Enabled", "%t (supported by the kernel: %t)", r.DeferredRemoval, r.DeferredRemovalSupported)
	line("Deferred Deletion Enabled", "%t", r.DeferredDeletion)
	line("Deferred Deleted Device Count", "%d", r.DeferredDeleted)
	line("Library Version", "%s", r.Library)
	line("Driver Version", "%s (device-mapper ioctl interface)", r.Interface)
	line("Thin Pool Target Version", "%s", r.PoolTarget)
	fmt.Fprintln(w, " Volumes:")
	for _, v := range r.Volumes {
		kind := "thin volume"
		if v.Origin != 0 {
			kind = fmt.Sprintf("snapshot of thin id %d", v.Origin)
		}
		fmt.Fprintf(w, "  %s: thin id %d, %s, size %s, mapped %s (catalog key %s)\n", v.Name, v.ID, kind, size.Human(v.Size), size.Human(v.Mapped), v.Key)
	}
}
