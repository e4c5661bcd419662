//go:build !linux

package main

// fsFree is unknown outside Linux, where autoextend cannot run anyway.
func fsFree(string) (uint64, bool) { return 0, false }
