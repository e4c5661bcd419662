module github.com/thinp/thinp

go 1.26.0

require (
	github.com/google/go-cmp v0.7.0
	github.com/pkg/errors v0.9.1
	golang.org/x/sys v0.49.0
)
