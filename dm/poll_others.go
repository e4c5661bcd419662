//go:build !linux

package dm

import "context"

type pollFile struct{}

func openPoll(path string) (*pollFile, error)      { return nil, errNoDM }
func (p *pollFile) arm() error                     { return errNoDM }
func (p *pollFile) wait(ctx context.Context) error { return errNoDM }
func (p *pollFile) close()                         {}
