// Package vm is the VM test tier: it runs the module's privileged tests
// (TestIntegration...) inside QEMU booting a Debian kernel, for hosts whose
// own kernel has no device-mapper.
//
// # What a run does
//
//  1. FindHost finds qemu-system-x86_64, a kernel and its module tree
//     (FindKernel), and the programs the guest gets: dmsetup,
//     thin-provisioning-tools, mkfs.ext4, systemd-udevd and udevadm, with lvm2's and
//     systemd's udev rules. Dynamically linked programs bring their
//     interpreter and libraries, found by reading DT_NEEDED and DT_RUNPATH
//     with debug/elf (no ldd).
//  2. Builder compiles, statically (CGO_ENABLED=0), the test binary of every
//     package with a TestIntegration test and the guest's /init
//     (./guestinit). Modules nested in the tree (examples/snapshotter, a
//     module of its own) are listed and built in their own root, once per
//     module (ListPackages says which patterns reach them).
//  3. BuildImage packs /init, the binaries, each package's testdata/, the
//     kernel modules (ResolveModules orders them by modules.dep, or by the
//     modules' .modinfo when dpkg -x left no modules.dep; a kernel whose
//     modules are compressed with xz or zstd needs modules.dep, which
//     .ci/vm-setup makes with depmod -b), the tools and a plan (package
//     proto) into a gzip'd newc cpio written by CPIOWriter.
//  4. Runner.Boot boots it with and/or without udevd (the kernel
//     parameter thinp.udev tells /init), on each kernel of the matrix
//     (FindKernels: the kernels .ci/kernels lists, which .ci/vm-setup
//     fetches from their Debian suites; TestVM boots 6.1 with and without
//     udevd, the others without). /init mounts proc, sysfs, devtmpfs
//     and tmpfs, loads the modules with finit_module, runs each test binary
//     with -test.v=test2json and THINP_VM=1 THINP_REQUIRE_PRIVILEGED=1
//     THINP_VM_UDEV=0|1 TMPDIR=/tmp in its package's copied directory, and
//     powers off.
//
// The console (first serial port) carries kernel messages and the tests'
// output. The result port (second serial port, a pipe to the host) carries
// one JSON event per line: every test and subtest verdict, the output of
// failed tests, job exit codes, heartbeats (with how long the running job
// has shown no progress: no output, no CPU time), and "done". A guest that
// shows no progress for Settings.Silence, or outlives Settings.Timeout, is
// killed; a
// kernel oops panics the guest (oops=panic), and Runner.Boot boots again
// from the next package so one crash hides nothing else.
//
// KVM is used only when a test boot under KVM succeeds: /dev/kvm can exist
// on a host that cannot run KVM guests (no vmx/svm flag); TCG otherwise.
//
// # Environment
//
//	THINP_VM=0              skip TestVM (quick unit-test runs); /init sets THINP_VM=1 in the guest
//	THINP_REQUIRE_VM=1      TestVM fails instead of skipping when QEMU or a kernel is missing
//	THINP_VM_KERNELS        kernels of .ci/kernels to boot, by name or release (bullseye,sid; default all)
//	THINP_VM_KERNEL         a vmlinuz to boot instead ...
//	THINP_VM_MODULES        ... and its lib/modules/<release> directory
//	THINP_VM_CACHE          where .ci/vm-setup unpacks kernels (default /var/cache/thinp-vm)
//	THINP_VM_QEMU           qemu-system-x86_64 to use
//	THINP_VM_ACCEL          kvm or tcg, instead of probing
//	THINP_VM_TIMEOUT        time limit per boot (default 30m)
//	THINP_VM_SILENCE        how long a guest lives without progress (default 90s)
//	THINP_VM_MEMORY, THINP_VM_CPUS  guest size (default 2048 MiB, 2)
//	THINP_VM_CPU_MODEL      QEMU's -cpu (default max)
//	THINP_VM_APPEND         more guest kernel parameters
//	THINP_VM_KEEP=1         keep the work directory (initramfs, binaries)
//	THINP_VM_PKGS           TestVM: package patterns (default ./...)
//	THINP_VM_RUN            TestVM: -test.run for the guest (default ^TestIntegration)
//	THINP_VM_ARGS           TestVM: more guest test flags, space separated
//	THINP_VM_CONSOLE=1      TestVM: stream the guests' consoles to stdout
//
// The guest's tests and programs see the host's other THINP_* variables
// (THINP_SCENARIO_SCALE, THINP_UDEV_CYCLES, ...) and the Go runtime's
// (GOGC, GODEBUG, GOMEMLIMIT, GOMAXPROCS, GOTRACEBACK): see GuestEnv.
//
// The control port (third serial port, a pipe from the host) carries the
// signals the host forwards (BootConfig.Signals) to the running job's
// process group; after a program (not a test) exits, /init reports the dm
// and loop devices it left behind.
//
// Command vmrun (./cmd/vmrun) runs one package's tests or one program in the
// guest; .ci/vm-setup installs everything with apt.
package vm
