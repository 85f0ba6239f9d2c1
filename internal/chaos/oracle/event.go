package oracle

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Event is one thing a contender did, printed as one line of JSON on its
// standard output, the moment it happened, for the driver to classify.
// Times are Unix nanoseconds: the contender's clock, except for enter,
// step and leave, which carry the oracle's. Every process of the test runs
// on one machine, so the clocks are one.
type Event struct {
	Kind Kind `json:"ev"`
	// Hold names one acquisition: "<process>.<incarnation>.<worker>.<seq>",
	// unique in a run, so a prefix names a process (see [Client.Sweep]).
	Hold string `json:"hold,omitempty"`
	Time int64  `json:"t"`
	// Token is the hold's fencing token (acquired).
	Token int64 `json:"token,omitempty"`
	// Long says the hold was asked to last long (acquired, enter).
	Long bool `json:"long,omitempty"`
	// N, Others and Regressed are the oracle's answer to enter.
	N         int64    `json:"n,omitempty"`
	Others    []string `json:"others,omitempty"`
	Regressed bool     `json:"regressed,omitempty"`
	// Step counts the steps of the critical section: the one a step event
	// or an abort is about, the number done for leave.
	Step int `json:"step,omitempty"`
	// Superseded and Refused are the oracle's answer to a step.
	Superseded bool `json:"superseded,omitempty"`
	Refused    bool `json:"refused,omitempty"`
	// Checked is when the contender last checked that its hold was not
	// lost before an enter or a step (its clock): a holder frozen between
	// the check and the write could not have been told in time.
	Checked int64 `json:"checked,omitempty"`
	// Counts are the PUBSUB NUMSUB counts of a portalocker acquisition: the
	// two that portalocker itself took (before subscribing, and to confirm),
	// and one that the contender takes right after, for the record.
	Counts []int64 `json:"counts,omitempty"`
	// Err is the error of acquire-error, told, abort, released (when the
	// release reported one) and oracle-error.
	Err string `json:"err,omitempty"`
	// Lost says that a release reported the hold lost before it (Go:
	// errors.Is(err, pubsublock.ErrLost)): the holder was told then.
	Lost bool `json:"lost,omitempty"`
}

// Kind says what an [Event] is about.
type Kind string

// The kinds of [Event], in the order of a hold's life.
const (
	// Start: the contender is running and has loaded nothing yet.
	Start Kind = "start"
	// AcquireError: an acquisition failed other than by finding the lock
	// held (a fault got in the way).
	AcquireError Kind = "acqerr"
	// Acquired: the lock is held; Hold is new.
	Acquired Kind = "acq"
	// Told: the hold was lost and the contender was told: Lost() fired (Go),
	// or the lock's worker thread died and interrupted the main thread
	// (portalocker). Printed by whoever is told, at once.
	Told Kind = "told"
	// Enter: the hold entered the critical section (the oracle's INCR).
	Enter Kind = "enter"
	// StepSeen: a step that the oracle found superseded or refused; steps
	// that were neither are only counted (see Leave).
	StepSeen Kind = "step"
	// Abort: before a step (Step) the contender saw that its hold was lost
	// and stopped working.
	Abort Kind = "abort"
	// Leave: the hold left the critical section (the oracle's DECR).
	Leave Kind = "leave"
	// Released: the release returned (Err: what it returned).
	Released Kind = "rel"
	// OracleError: a call to the oracle failed, so its verdict on this
	// hold is unknown.
	OracleError Kind = "oerr"
	// Exit: the contender is exiting on its own, its standard input closed.
	Exit Kind = "exit"
)

// Now returns the current time as an Event's Time.
func Now() int64 { return time.Now().UnixNano() }

// Printer prints Events, one JSON line each, in one write each, so a
// process killed between two events loses none it printed. It is safe for
// concurrent use.
type Printer struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

// NewPrinter returns a Printer on w.
func NewPrinter(w io.Writer) *Printer { return &Printer{w: w} }

// Print writes e. An error (the driver has gone) is ignored: the contender
// dies of it at its next read of standard input.
func (p *Printer) Print(e Event) {
	b, err := json.Marshal(e)
	if err != nil {
		panic(err) // an Event always marshals
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = p.w.Write(append(b, '\n'))
}
