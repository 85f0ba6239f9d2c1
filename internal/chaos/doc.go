// Package chaos is the proof of the lock under faults: contender processes
// take one lock over and over while a fault loop kills, pauses, restarts,
// freezes and cuts them off, and an oracle outside the lock checks that no
// two of them are ever in the critical section together without one of
// them having been told it lost the lock. Run it with make chaos.
//
// TODO: the full description.
package chaos
