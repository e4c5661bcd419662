package dm

// setupUdev decides, once at Open, whether this Control waits for udev.
func (c *Control) setupUdev() error {
	switch c.cfg.udev {
	case UdevRequired:
		return newError("open", Ref{}, &NotSupportedError{What: "udev synchronisation", Need: c.version, Kernel: c.version})
	}
	return nil
}
