//go:build race

package channeltest

// raceEnabled: the test binary is built with the race detector.
const raceEnabled = true
