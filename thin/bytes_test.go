package thin

import "testing"

func TestPoolStatusBytes(t *testing.T) {
	st := PoolStatus{UsedData: 3, TotalData: 10, UsedMeta: 2, TotalMeta: 8}
	const bs = 128 // 64 KiB
	if st.DataUsedBytes(bs) != 3<<16 || st.DataTotalBytes(bs) != 10<<16 || st.DataAvailableBytes(bs) != 7<<16 {
		t.Errorf("data: %d %d %d", st.DataUsedBytes(bs), st.DataTotalBytes(bs), st.DataAvailableBytes(bs))
	}
	if st.MetaUsedBytes() != 2<<12 || st.MetaTotalBytes() != 8<<12 || st.MetaAvailableBytes() != 6<<12 {
		t.Errorf("meta: %d %d %d", st.MetaUsedBytes(), st.MetaTotalBytes(), st.MetaAvailableBytes())
	}
	st.UsedMeta = 9
	if st.MetaAvailableBytes() != 0 {
		t.Error("overfull metadata: available not 0")
	}
}
