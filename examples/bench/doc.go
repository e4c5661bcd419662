// Command bench measures thinp end to end against the two things a user
// would pick instead: the dmsetup binary driven from Go with os/exec (as
// containerd's devmapper snapshotter does), and a minimal raw-ioctl loop
// written for this benchmark only, with no validation and no policy, which
// is the floor the kernel sets.
//
// It needs root and a kernel with device-mapper, thin provisioning and loop
// devices; where the host has none, run it in the VM test tier:
//
//	THINP_VM_MEMORY=8192 go run ./internal/vm/cmd/vmrun run -udev=false ./examples/bench
//	THINP_VM_MEMORY=8192 go run ./internal/vm/cmd/vmrun run ./examples/bench -- -workloads a,b,d  # boot with udevd
//	go run ./internal/vm/cmd/vmrun run ./examples/bench -- -quick -workloads a,b
//
// # Set-up
//
// Everything happens in one process, on one thin pool: two sparse files in
// a temporary directory (tmpfs in the VM), attached to loop devices, with a
// thin-pool table "0 <data sectors> thin-pool <meta> <data> 128 0" created
// through package dm. Every device the run makes is named with one prefix,
// and everything is removed at the end, also after an error or Ctrl-C.
//
// # Workloads
//
// Each workload runs three ways: the library (a dm.Control), dmsetup
// (one exec per step), and the raw floor (ioctl encoders, one reused buffer,
// ioctl(2) straight on the control node).
//
//	a  thin volume lifecycle: create_thin, create + load + resume, remove,
//	   delete; one op is one whole cycle
//	b  snapshot of an active origin: suspend, create_snap, resume; one op
//	   is one snapshot
//	c  status of every device (list, then table status of each), with
//	   each number of active thin volumes given by -volumes, timed per
//	   device, so ops/s should not depend on the count. c-status is the
//	   scan: one op is one whole scan (Control.StatusAll; the floor's list
//	   and status reads; one `dmsetup status`). c-statusfunc is the read
//	   of one device's status by a caller that has its name
//	   (Control.StatusFunc against the floor's read; dmsetup has no such
//	   call apart from its scan). Both hand out each status line where the
//	   kernel wrote it, as the floor reads it
//	d  the lifecycle of (a), synchronised with udev by cookies (the
//	   library with dm.UdevRequired, dmsetup without --noudevsync, the floor
//	   with a udev.Cookie); only where udevd runs
//	e  package thin's create_thin, create_snap of an active origin and
//	   delete, each timed alone against the raw floor (message, or suspend
//	   + message + resume), with each count of -e-volumes other active thin
//	   volumes (default 0, 1,000 and 10,000) in the same pool, activated
//	   through package thin; then the growth of each op's cost from the
//	   smallest count to the largest, which should be none
//	f  the lifecycle of (a) through package thin and through dmsetup,
//	   with each count of -f-goroutines goroutines (default 1, 4, 8, 16)
//	   on the one pool; ops/s is cycles over wall time
//
// Workloads (a) and (b) run twice: through package dm (lines a-lifecycle,
// b-snapshot) and through package thin's Pool, as its users call it
// (a-lifecycle-thin: CreateThin, Activate, Volume.Deactivate, Delete;
// b-snapshot-thin: CreateSnapshot of an origin activated through the
// Pool), with a quarter of the dmsetup ops.
//
// Workloads (a) to (c) do not wait for udev: the library runs with
// dm.UdevOff, dmsetup with --noudevsync, the floor with the same udev flags
// in event_nr. When udevd runs, the benchmark waits for it to settle
// before each timed phase.
//
// # Measuring
//
// Each workload first runs a few library ops alone, untimed, as a warm-up
// during which the library's peak RSS is measured. Then the three methods
// take turns op by op: a library op and a floor op back to back (which
// goes first alternates), and a dmsetup op whenever dmsetup falls behind
// its share (-dmsetup-n is smaller than -n by default: an exec costs the
// same every time, and ops/s is what is compared). On shared cores the
// load changes from second to second and moves a TCG guest's clock with
// it; taking turns makes it weigh on the three methods alike, and the
// rates are taken from the median op, which ignores the ops the host
// starved.
//
// # Output
//
// One line per workload,
//
//	bench: <workload> lib=<ops/s> dmsetup=<ops/s> raw=<ops/s> lib/raw=<ratio> lib/dmsetup=<ratio>
//
// where ops/s is one over the median op time ((e) has no dmsetup:
// dmsetup=0.00, lib/dmsetup=n/a), the growth lines of (e),
//
//	bench: e-<op>-growth volumes=<from>-><to> lib=<time>-><time> (x<growth>) raw=<time>-><time> (x<growth>)
//
// and those of (f),
//
//	bench: f-lifecycle-parallel-<goroutines> lib=<ops/s> dmsetup=<ops/s> lib/serial=<ratio> dmsetup/serial=<ratio> lib/dmsetup=<ratio>
//
// then a "bench: peak-rss"
// line: the largest VmHWM of /proc/self/status at the end of a library
// warm-up, the high-water mark having been reset (write "5" to
// /proc/self/clear_refs) after returning freed memory to the kernel at its
// start. Where clear_refs is refused, the line says it fell back to
// getrusage's ru_maxrss, which covers the whole process. Lines starting
// with "info:" give the details: ops and time per method, median and mean
// op times, the median lib/raw ratio of back-to-back pairs, and for (c)
// the cost of listing and the growth of the cost per device.
//
// # Profiling
//
// -cpuprofile FILE writes a CPU profile of each workload to
// FILE.<workload>, its samples labelled method=lib, dmsetup or raw (keep
// the library's with go tool pprof -tagfocus=method=lib); with
// -cpuprofile - the profiles are printed
// on standard output in base64 between "-----BEGIN PPROF <workload>-----"
// and "-----END PPROF-----" lines, so that they can be carried out of the
// VM on its console.
package main
