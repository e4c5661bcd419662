package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
)

// profiler writes a CPU profile of each workload: to <path>.<workload>,
// or, with path "-", base64-encoded on out between marker lines, which
// survives a VM's serial console. Samples carry the label method=lib,
// dmsetup or raw.
type profiler struct {
	path string
	out  io.Writer

	name string
	f    *os.File
	buf  *bytes.Buffer
}

func newProfiler(path string, out io.Writer) *profiler { return &profiler{path: path, out: out} }

func (p *profiler) start(name string) error {
	if p.path == "" {
		return nil
	}
	p.name = name
	var w io.Writer
	if p.path == "-" {
		p.buf = new(bytes.Buffer)
		w = p.buf
	} else {
		f, err := os.Create(p.path + "." + name)
		if err != nil {
			return err
		}
		p.f, w = f, f
	}
	if err := pprof.StartCPUProfile(w); err != nil {
		p.close()
		return err
	}
	return nil
}

func (p *profiler) stop() error {
	if p.path == "" || (p.f == nil && p.buf == nil) {
		return nil
	}
	pprof.StopCPUProfile()
	defer p.close()
	if p.f != nil {
		return p.f.Close()
	}
	enc := base64.StdEncoding.EncodeToString(p.buf.Bytes())
	var s strings.Builder
	fmt.Fprintf(&s, "-----BEGIN PPROF %s-----\n", p.name)
	for len(enc) > 0 {
		n := min(len(enc), 76)
		s.WriteString(enc[:n])
		s.WriteByte('\n')
		enc = enc[n:]
	}
	s.WriteString("-----END PPROF-----\n")
	_, err := io.WriteString(p.out, s.String())
	return err
}

func (p *profiler) close() {
	if p.f != nil {
		p.f.Close()
	}
	p.f, p.buf = nil, nil
}
