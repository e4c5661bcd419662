package thin

import "github.com/thinp/thinp/dm"

// Byte figures of a pool's space, for reports in the style of docker info's
// devicemapper section. The data figures need the pool's block size
// (Pool.BlockSize, PoolSpec.BlockSize): the status line counts data in pool
// blocks; metadata blocks are always 4 KiB.

// DataUsedBytes is the data space in use, in bytes.
func (st PoolStatus) DataUsedBytes(blockSize dm.Sectors) uint64 {
	return uint64(st.UsedData.Sectors(blockSize)) * dm.SectorSize
}

// DataTotalBytes is the size of the pool's data space, in bytes.
func (st PoolStatus) DataTotalBytes(blockSize dm.Sectors) uint64 {
	return uint64(st.TotalData.Sectors(blockSize)) * dm.SectorSize
}

// DataAvailableBytes is the data space not in use, in bytes (0 if the
// kernel reports more used than total).
func (st PoolStatus) DataAvailableBytes(blockSize dm.Sectors) uint64 {
	return uint64(st.FreeData().Sectors(blockSize)) * dm.SectorSize
}

// MetaUsedBytes is the metadata space in use, in bytes.
func (st PoolStatus) MetaUsedBytes() uint64 { return st.UsedMeta.Bytes() }

// MetaTotalBytes is the size of the metadata space, in bytes.
func (st PoolStatus) MetaTotalBytes() uint64 { return st.TotalMeta.Bytes() }

// MetaAvailableBytes is the metadata space not in use, in bytes.
func (st PoolStatus) MetaAvailableBytes() uint64 {
	if st.UsedMeta >= st.TotalMeta {
		return 0
	}
	return (st.TotalMeta - st.UsedMeta).Bytes()
}
