package resp

import (
	"errors"
	"strings"
)

// Error is an error reply from the server: a simple error ("-ERR unknown
// command") or a bulk error. Its text is the reply without the type byte.
type Error string

// Error returns the reply text, e.g. "MOVED 5258 127.0.0.1:17001".
func (e Error) Error() string { return string(e) }

// Code returns the error code: the first word of the reply when it is all
// upper case, as Redis writes codes ("ERR", "MOVED", "NOPROTO", "WRONGPASS"),
// and "" otherwise.
func (e Error) Code() string {
	s := string(e)
	if i := strings.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return ""
		}
	}
	return s
}

// ErrProtocol is matched by every [*ProtocolError] with errors.Is.
var ErrProtocol = errors.New("resp: protocol error")

// ErrLimit is matched with errors.Is by a [*ProtocolError] that reports a
// reply beyond the reader's [Limits], rather than bytes that are not RESP:
// the server may be sound and the limits too small for it. It matches
// ErrProtocol as well, and the connection is as unusable.
var ErrLimit = errors.New("resp: limit exceeded")

// ProtocolError reports bytes that are not valid RESP, or that exceed the
// reader's [Limits]. The stream cannot be resynchronised after one: close
// the connection.
type ProtocolError struct {
	Reason string // what was wrong, e.g. "bulk length 9223372036854775807 exceeds limit 33554432"
	Limit  string // the field of Limits exceeded, e.g. "MaxBulkLen"; "" when the bytes are not RESP
}

// Error returns "resp: protocol error: " followed by the reason.
func (e *ProtocolError) Error() string { return "resp: protocol error: " + e.Reason }

// Is reports whether target is [ErrProtocol], or [ErrLimit] when a limit was
// exceeded.
func (e *ProtocolError) Is(target error) bool {
	return target == ErrProtocol || target == ErrLimit && e.Limit != ""
}

func protoErr(reason string) error { return &ProtocolError{Reason: reason} }

// limitErr reports that the Limits field named limit was exceeded.
func limitErr(limit, reason string) error { return &ProtocolError{Reason: reason, Limit: limit} }
