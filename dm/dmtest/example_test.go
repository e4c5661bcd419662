package dmtest_test

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/thinp/thinp/dm"
	"github.com/thinp/thinp/dm/dmtest"
	"github.com/thinp/thinp/ioctl"
	"github.com/thinp/thinp/thin"
)

// A unit test of code built on package thin, without root or a kernel with
// device-mapper: two fake block devices, a pool on them, a volume, an
// injected kernel failure, and the log of what was sent.
func Example() {
	ctx := context.Background()
	k := dmtest.New()
	meta, data := dm.Dev{Major: 7, Minor: 0}, dm.Dev{Major: 7, Minor: 1}
	k.AddBlockDevice(meta, 8192)    // 4 MiB, like a loop device
	k.AddBlockDevice(data, 2097152) // 1 GiB
	ctl, err := dmtest.NewControl(k)
	if err != nil {
		panic(err)
	}
	defer ctl.Close()

	// The fake has no sysfs to tell the data device's size: give it.
	pool, err := thin.CreatePool(ctx, ctl, "pool", thin.PoolSpec{
		Metadata: meta, Data: data, BlockSize: 128, Length: 2097152,
	})
	if err != nil {
		panic(err)
	}
	if err := pool.CreateThin(ctx, 1); err != nil {
		panic(err)
	}
	vol, err := pool.Activate(ctx, "vol", 1, thin.Size(64*thin.MiB))
	if err != nil {
		panic(err)
	}
	fmt.Println(vol.Name(), vol.Size(), "sectors")

	// The kernel refuses the next message: the caller sees a typed error.
	k.FailNext(ioctl.CmdTargetMsg, unix.ENOSPC)
	err = pool.CreateThin(ctx, 2)
	fmt.Println(errors.Is(err, unix.ENOSPC), err)

	// The call log shows what reached the kernel.
	k.ResetCalls()
	_ = pool.CreateThin(ctx, 99999999) // refused before sending
	fmt.Println(len(k.Calls()), "ioctls sent for a bad id")
	// Output:
	// vol 131072 sectors
	// true thin pool pool: create_thin 2: no space left on device (ENOSPC)
	// 0 ioctls sent for a bad id
}
