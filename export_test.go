package pubsublock

// The fault, interop and contention tests are black-box tests (package
// pubsublock_test): they use the exported API and redistest only. These
// are the helpers of helpers_test.go that they share with the package's
// own tests, exported for them, so that each helper is written once.
// Nothing of the package itself is exported here.
var (
	NewLock     = newLock
	MustAcquire = mustAcquire
	WaitLost    = waitLost
	LeakCheck   = leakCheck
	// StartGoHolder starts a Go holder process of a protocol (peer_test.go).
	StartGoHolder = startGoHolder
)

// HolderProcessEnv is holderProcessEnv, for the black-box tests.
const HolderProcessEnv = holderProcessEnv

// LockedBuffer is lockedBuffer, for the black-box tests.
type LockedBuffer = lockedBuffer
