//go:build !race

package servicetest

// Race is true when the test binary is built with -race; binaries built for the test
// are then built with -race too.
const Race = false
