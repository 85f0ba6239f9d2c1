//go:build race && unix

package main

// raceEnabled makes the test build the demo with -race too.
const raceEnabled = true
