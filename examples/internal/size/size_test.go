package size

import "testing"

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
		err  bool
	}{
		{"0", 0, false},
		{"1048576", 1 << 20, false},
		{"64KiB", 64 << 10, false},
		{"64k", 64 << 10, false},
		{"16M", 16 << 20, false},
		{"1GiB", 1 << 30, false},
		{"2 G", 2 << 30, false},
		{"1T", 1 << 40, false},
		{"2GB", 2e9, false},
		{"1kB", 1000, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-1", 0, true},
		{"1.5G", 0, true},
		{"1X", 0, true},
		{"9999999999T", 0, true},
	} {
		got, err := Parse(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, error %t", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[uint64]string{
		0:          "0 B",
		999:        "999 B",
		65536:      "65.54 kB",
		1 << 30:    "1.074 GB",
		1048576000: "1.049 GB",
		16777216:   "16.78 MB",
		100e9:      "100 GB",
	} {
		if got := Human(n); got != want {
			t.Errorf("Human(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[uint64]string{0: "0B", 1000: "1000B", 64 << 10: "64KiB", 1 << 30: "1GiB", 3 << 29: "1.5GiB", 3 << 39: "1.5TiB", 1025 << 10: "1025KiB", 5000000: "5000000B", 1 << 62: "4EiB"} {
		if got := IEC(n); got != want {
			t.Errorf("IEC(%d) = %q, want %q", n, got, want)
		}
	}
}
