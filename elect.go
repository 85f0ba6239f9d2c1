package pubsublock

// A contender that finds others subscribed asks them who they are (see
// attempt.contend) and judges their answers here. Readers (Config.Shared)
// hold the lock together; a writer holds it alone, and takes it only when
// it is the one subscriber (a count made after its own subscription, so
// that two writers, or a writer and a reader, never both take it). A
// writer that waits for readers stays subscribed, pending, and so keeps
// new readers out; when several writers wait, the one with the lowest id
// stays (the election of portalocker 4: every writer that sees the same
// answers elects the same one), and the others leave and wait. A writer
// that won keeps its place against newcomers with lower ids, and says so
// in its answers ("elected", as portalocker 4.2 does): only another
// elected writer with a lower id, or an exclusive holder, makes it leave.
//
// Portalocker 4.0 and 4.1 do not say whether a pending writer won, and an
// elected 4.1 writer keeps its place as long as its probes are disturbed
// by contenders coming and going, so it and an elected Go writer could
// each wait for the other to leave: a Go writer gives way to any of them
// that is pending, unless it won first and has the lower id (then the
// 4.1 writer leaves at its next probe, as it does for its own kind).
//
// The election decides only who waits, never who holds: a writer takes
// the lock on its count alone. So a stale answer (portalocker 4.1's
// writers may still say "pending" once they hold the lock, upstream #145)
// or two writers that both think they won (4.1 does not say "elected", so
// a newcomer with a lower id may usurp an elected 4.1 writer, upstream
// #143) cost a wait, never a second holder.

// verdict is what a contender makes of the answers to its ping.
type verdict int

const (
	// verdictUnsure: not every subscriber has answered yet.
	verdictUnsure verdict = iota
	// verdictJoin: a reader among readers only; it holds the lock.
	verdictJoin
	// verdictElected: a writer that won the writers' election; it stays
	// pending until the readers are gone.
	verdictElected
	// verdictWait: someone it must wait for holds the lock, or won the
	// election; it leaves.
	verdictWait
	// verdictKilled: silent holders were killed, or left on their own;
	// it tries again at once.
	verdictKilled
	// verdictRecheck: holders named "<channel>-lock" stayed silent, but
	// the pinger has that name too and cannot tell its own connection
	// from theirs (its client id is unknown on RESP2): it leaves, and
	// checks them unsubscribed (see spec.checkOrKill).
	verdictRecheck
)

// judge says what the lock's participant, subscribed, makes of the answers
// p collected so far (incumbent: it won the writers' election before).
// Its own answer is among them. A reader joins when every subscriber
// answered as a reader; a writer is elected when every subscriber
// answered, none holds the lock exclusively, and no other pending writer
// outranks it. A legacy answer (portalocker 2.x and 3.x) is exclusive.
func (s *spec) judge(p *probe, incumbent bool) verdict {
	seen := make(map[string]bool)
	anonymous := 0
	var pending []answer
	for _, a := range p.snapshot() {
		switch {
		case a.id == "":
			anonymous++
		case seen[a.id]:
			continue
		default:
			seen[a.id] = true
		}
		if a.id == s.self && a.id != "" {
			continue
		}
		switch {
		case s.shared && a.mode != ModeShared:
			return verdictWait
		case !s.shared && a.mode == ModeExclusive:
			return verdictWait
		case a.mode == ModePending:
			pending = append(pending, a)
		}
	}
	if int64(len(seen)+anonymous) < p.receivers {
		return verdictUnsure
	}
	if s.shared {
		return verdictJoin
	}
	for _, o := range pending {
		lower := o.id < s.self
		switch {
		case o.unsaid:
			// portalocker 4.0 or 4.1, which does not say whether it won:
			// it may have, and then keeps its place until it holds the
			// lock, or sees us in a probe that no contender disturbs;
			// and newcomers take its place, if their ids are lower, as
			// its own do. Whoever stays with it would wait for it as it
			// waits for them.
			if !incumbent || lower {
				return verdictWait
			}
		case o.elected && (lower || !incumbent), lower && !incumbent:
			return verdictWait
		}
	}
	return verdictElected
}
