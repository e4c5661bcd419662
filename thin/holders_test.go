package thin

import (
	"github.com/thinp/thinp/dm"
)

// The fake host shows the fake kernel's holders, as sysfs would.
func (h *fakeHost) holders(d dm.Dev) ([]holderLink, error) {
	var out []holderLink
	for _, x := range h.k.Holders(d.Major, d.Minor) {
		out = append(out, holderLink{minor: x.Minor, link: x.Link})
	}
	return out, nil
}

func (h *fakeHost) dmName(d dm.Dev) (string, error) {
	info, err := h.k.DeviceName(d.Major, d.Minor)
	return info, err
}
