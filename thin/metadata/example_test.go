package metadata_test

import (
	"fmt"
	"os"

	"github.com/thinp/thinp/thin/metadata"
)

func Example() {
	f, err := os.Open("testdata/pool.img")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	md, err := metadata.Open(f, metadata.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	sb := md.Superblock()
	fmt.Printf("version %d, transaction %d, %d-sector blocks, %d data blocks\n",
		sb.Version, sb.TransactionID, md.DataBlockSize(), md.NrDataBlocks())
	for d, err := range md.Devices() {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("thin %d: %d blocks mapped\n", d.ID, d.MappedBlocks)
	}
	// Output:
	// version 2, transaction 7, 128-sector blocks, 1024 data blocks
	// thin 1: 12 blocks mapped
	// thin 2: 10 blocks mapped
	// thin 3: 0 blocks mapped
	// thin 7: 300 blocks mapped
}

func ExampleMetadata_Mappings() {
	f, _ := os.Open("testdata/pool.img")
	defer f.Close()
	md, err := metadata.Open(f, metadata.Options{MetadataSnap: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	for m, err := range md.Mappings(1) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("blocks %d-%d -> %d-%d, time %d\n", m.VBegin, m.VBegin+m.Len-1, m.DBegin, m.DBegin+m.Len-1, m.Time)
	}
	// Output:
	// blocks 0-7 -> 0-7, time 0
	// blocks 8-11 -> 20-23, time 1
}

func ExampleMetadata_Usage() {
	f, _ := os.Open("testdata/pool.img")
	defer f.Close()
	md, _ := metadata.Open(f, metadata.Options{})
	us, err := md.Usage()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, u := range us {
		fmt.Printf("thin %d: mapped %d, exclusive %d, shared %d\n", u.ID, u.Mapped, u.Exclusive, u.Shared)
	}
	// Output:
	// thin 1: mapped 12, exclusive 4, shared 8
	// thin 2: mapped 10, exclusive 2, shared 8
	// thin 3: mapped 0, exclusive 0, shared 0
	// thin 7: mapped 300, exclusive 300, shared 0
}

func ExampleMetadata_Diff() {
	f, _ := os.Open("testdata/pool.img")
	defer f.Close()
	md, _ := metadata.Open(f, metadata.Options{})
	for d, err := range md.Diff(1, 2) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %d+%d\n", d.Kind, d.VBegin, d.Len)
	}
	// Output:
	// same 0+8
	// left_only 8+1
	// different 9+2
	// left_only 11+1
}
