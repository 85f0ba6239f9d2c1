// Package resp reads and writes the Redis serialization protocol, RESP2 and
// RESP3, with hard limits on everything the wire can ask it to allocate.
//
// A [Reader] decodes one reply at a time into a [Value]. Strings and
// aggregates in a Value point into buffers the Reader reuses, so a Value is
// valid only until the next call to [Reader.Read]; call [Value.Clone] to keep
// it. In steady state, reading simple strings, integers and small arrays
// allocates nothing.
//
// Every length on the wire is checked against [Limits] before it is used,
// and memory grows only as bytes actually arrive: a header that announces a
// gigabyte costs nothing until the gigabyte is sent. Each reply as a whole
// is bounded too, in values and in bytes, so that a Reader allocates at most
// 16 bytes per byte it is sent, plus a constant for short streams: what
// replies at the limits take however short they are, under 10 MiB with the
// defaults, most of it for the Values of the 32,768 values a reply may hold.
// Integers are parsed with overflow checks and every CRLF trailer is
// verified. A violation is a [*ProtocolError] (errors.Is(err, [ErrProtocol])
// holds, and errors.Is(err, [ErrLimit]) too when a limit was exceeded);
// after one, the stream is out of sync and the connection must be closed.
//
// Replies that are errors (simple errors and bulk errors) are returned as
// Values of type [TypeError] or [TypeBulkError]; [Value.Err] turns them into
// an [Error] whose [Error.Code] is the Redis error code, such as "MOVED".
//
// [AppendCommand] encodes a command, every argument a bulk string, onto a
// caller's buffer, allocating nothing when the buffer is large enough.
package resp
