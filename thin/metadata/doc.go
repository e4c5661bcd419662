// Package metadata reads dm-thin's on-disk metadata — a thin pool's
// devices, their mappings, reference counts and usage — from an
// io.ReaderAt: an inactive pool's metadata device, a file written by
// thin_restore, or a running pool's metadata device through the metadata
// snapshot that reserve_metadata_snap holds. It never writes, imports only
// the standard library, and verifies everything it reads.
//
//	md, err := metadata.Open(f, metadata.Options{MetadataSnap: true})
//	for d, err := range md.Devices() { ... }          // ids and details
//	for m, err := range md.Mappings(id) { ... }       // ranges, streamed
//	us, err := md.Usage()                             // mapped/exclusive/shared
//	for d, err := range md.Diff(snap1, snap2) { ... } // thin_delta
//
// Iterators are iter.Seq2[T, error]: a non-nil error is the last value
// yielded. Damaged input gives a *CorruptError naming the block and what
// is wrong with it (errors.Is(err, ErrCorrupt)), never a panic or an
// endless walk.
//
// # The on-disk format
//
// The metadata device is an array of 4 KiB blocks, all little-endian.
// Every block starts with a crc32c of the rest of the block (seeded with
// all ones, not inverted at the end) xor'ed with a constant for the
// block's kind — superblock 160774, btree node 121107, space map bitmap
// 240779, metadata space map index 160478 — and then the block's own
// number, so misplaced blocks are detected.
//
// Block 0 is the superblock: magic 27022010, version (1 or 2), flags
// (bit 0: needs_check), the pool's snapshot time and transaction id, the
// held root (the block of the metadata snapshot, 0 if none), the roots of
// the data and metadata space maps, of the mapping tree and of the device
// details tree, the data block size in sectors and the metadata device's
// size in blocks. A metadata snapshot is a copy of the superblock, in its
// own block, whose space map roots are wiped.
//
// Trees are copy-on-write B+trees with 64-bit keys. A node has a 32-byte
// header (checksum, flags internal/leaf, block number, nr_entries,
// max_entries, value_size), then max_entries keys, then max_entries
// values; internal nodes' values are child block numbers, and key i is
// at most every key under child i. Nodes are shared between trees
// (snapshots share subtrees), never within one tree, so a walk checks that
// every key lies in its parent's range, which also rules out cycles, and
// bounds depth.
//
// The device details tree maps a thin id to 24 bytes: mapped blocks,
// transaction id, creation time and snapshotted time. The mapping tree
// has two levels: thin id to the root of that device's tree, which maps a
// virtual block to data block << 24 | time (the pool time when the block
// was written, 24 bits).
//
// A space map counts references per block: two bits per block in bitmap
// blocks (a 16-byte header, then 16,320 entries; 3 means "see the
// reference count tree"), a btree from block to 32-bit count for counts
// above 2, and an index of the bitmap blocks: for data, a btree of 16-byte
// index entries (bitmap block, free count, first free); for metadata, one
// index block of up to 255 such entries.
package metadata
