package thin

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrManagedByLVM: the pool belongs to LVM (its device-mapper uuid starts
// with "LVM-"), and the operation would change its thin device ids or
// transaction id behind LVM's back. The error also matches
// dm.ErrPermission and unix.EPERM.
var ErrManagedByLVM = errors.New("pool is managed by LVM")

// lvmUUIDPrefix starts the device-mapper uuid of every device lvm2
// activates ("LVM-" + VG uuid + LV uuid, plus "-tpool" for a thin pool's
// pool device).
const lvmUUIDPrefix = "LVM-"

// metadataSnapOps are the messages that leave a pool's thin ids and
// transaction id alone, so they are allowed on an LVM pool (thin_ls and
// thin_delta read a live pool's metadata through them).
var metadataSnapOps = []string{"reserve_metadata_snap", "release_metadata_snap"}

// checkOwner refuses op on a pool that lvm2 manages. LVM records every thin
// volume of a pool, with its thin id, and the pool's transaction id in its
// own metadata, and checks the pool against it at each activation:
// create_thin, create_snap, delete or set_transaction_id sent by anyone
// else leaves the two disagreeing, and lvm refuses to activate the pool
// until the metadata is repaired by hand. Such pools are opened, read and
// watched like any other; their thin volumes are made and deleted with
// lvcreate and lvremove.
func (p *Pool) checkOwner(op string) error {
	for _, ok := range metadataSnapOps {
		if strings.HasPrefix(op, ok) {
			return nil
		}
	}
	// The uuid was read when the Pool was made: the kernel sets a device's
	// uuid at most once, so this costs no ioctl.
	if strings.HasPrefix(p.uuid, lvmUUIDPrefix) {
		return refused(op, p.name, ErrManagedByLVM, unix.EPERM,
			"dm uuid %s: lvm2 keeps this pool's thin ids and transaction id in its own metadata; use lvcreate and lvremove", p.uuid)
	}
	return nil
}
