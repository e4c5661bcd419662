// Command thintools reads dm-thin pool metadata with package
// thin/metadata, pure Go, and prints what thin-provisioning-tools 0.9.0's
// thin_ls, thin_dump and thin_delta print, byte for byte, for the same
// metadata.
//
// Usage:
//
//	thintools ls [-m|--metadata-snap] [--no-headers] [-o|--format FIELDS] DEVICE
//	thintools dump [-f|--format xml|human_readable] [-m|--metadata-snap[=BLOCK]]
//	               [-o FILE] [--dev-id ID]... [--skip-mappings]
//	               [--transaction-id N] [--data-block-size N] [--nr-data-blocks N] DEVICE
//	thintools delta --snap1 ID --snap2 ID [-m|--metadata-snap[=BLOCK]] [--verbose] DEVICE
//	thintools -bench [-devices N] [-mappings N] [-dir DIR]
//
// DEVICE is a metadata device or a file holding metadata (thin_restore's
// output). Options follow the tools': long options may be abbreviated,
// options and operands may be mixed. --thin1/--thin2 are synonyms of
// --snap1/--snap2. Installed as, or linked to, thin_ls, thin_dump or
// thin_delta, it behaves as that tool without the subcommand word.
//
// Errors go to stderr and make the exit status 1. Input that is not thin
// metadata, or is damaged, is reported with the block and what is wrong;
// thin_dump's --repair is not implemented.
//
// -bench builds a metadata image with thin_restore (N thin devices, half
// of them snapshots, about M mappings in all; defaults 1,000 and
// 1,000,000), then times listing, usage, dumping and diffing with this
// package against running thin_ls, thin_dump and thin_delta on the same
// image, and prints one "bench:" line per operation with the rates, their
// ratio and the peak RSS of each side.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run runs the tool with args (args[0] the program name) and returns the
// exit status.
func run(args []string, stdout, stderr io.Writer) int {
	name := filepath.Base(args[0])
	args = args[1:]
	cmd := ""
	switch name {
	case "thin_ls", "thin_dump", "thin_delta":
		cmd = strings.TrimPrefix(name, "thin_")
	default:
		if len(args) == 0 {
			usage(stderr)
			return 1
		}
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "ls":
		return lsCmd(args, stdout, stderr)
	case "dump":
		return dumpCmd(args, stdout, stderr)
	case "delta":
		return deltaCmd(args, stdout, stderr)
	case "-bench", "--bench", "bench":
		return benchCmd(args, stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "thintools: unknown command %q\n", cmd)
	usage(stderr)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: thintools ls|dump|delta [options] {device|file}
       thintools -bench [-devices N] [-mappings N] [-dir DIR]
Run "thintools ls -h" (dump -h, delta -h) for a command's options.
`)
}
