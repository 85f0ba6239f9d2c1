//go:build unix

package main

// Exit statuses of pubsublock itself, sysexits(3) style where one fits.
// COMMAND's own status passes through unchanged, so these can also come
// from COMMAND; -v logs which it was.
const (
	exitOK          = 0   // status: the lock is free
	exitHeld        = 1   // status: the lock is held
	exitConflict    = 1   // default of -E: held elsewhere (-n) or not obtained within -w, as flock
	exitUsage       = 64  // EX_USAGE: bad flags or arguments, invalid URL or channel, unreadable files they name
	exitUnavailable = 69  // EX_UNAVAILABLE: the Redis server cannot be reached or used (dial, TLS, AUTH, replies not RESP)
	exitSoftware    = 70  // EX_SOFTWARE: internal error, COMMAND could not be started
	exitLost        = 75  // EX_TEMPFAIL: the lock was lost while COMMAND ran or was stopped, or before it started
	exitNotExec     = 126 // COMMAND found but not executable, as sh
	exitNotFound    = 127 // COMMAND not found, as sh
	exitSignal      = 128 // plus N: killed by signal N, as sh
)
