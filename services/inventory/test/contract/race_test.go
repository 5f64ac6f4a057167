//go:build race

package contract

func init() { raceEnabled = true }
