package resp

import (
	"math"
	"strconv"
)

// AppendCommand appends a command to dst as a RESP array of bulk strings,
// the form every Redis server accepts from clients, and returns the
// extended buffer. It allocates only when dst must grow.
func AppendCommand(dst []byte, args ...string) []byte { return appendCommand(dst, args) }

// AppendCommandBytes is [AppendCommand] for byte-slice arguments.
func AppendCommandBytes(dst []byte, args ...[]byte) []byte { return appendCommand(dst, args) }

func appendCommand[T string | []byte](dst []byte, args []T) []byte {
	dst = appendHeader(dst, '*', len(args))
	for _, a := range args {
		dst = appendHeader(dst, '$', len(a))
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

func appendHeader(dst []byte, t byte, n int) []byte {
	dst = append(dst, t)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendValue appends v to dst in RESP3 and returns the extended buffer.
// Simple strings and errors containing LF, which RESP cannot carry
// on one line, are written as bulk strings and bulk errors. Reading the
// result gives a value [Value.Equal] to v, apart from that substitution.
func AppendValue(dst []byte, v Value) []byte {
	if len(v.Attrs) > 0 {
		dst = appendHeader(dst, '|', len(v.Attrs)/2)
		for _, a := range v.Attrs {
			dst = AppendValue(dst, a)
		}
	}
	switch v.Type {
	case TypeSimpleString, TypeError:
		if hasNewline(v.Str) {
			t := byte(TypeBulkString)
			if v.Type == TypeError {
				t = byte(TypeBulkError)
			}
			return appendBlob(appendHeader(dst, t, len(v.Str)), v.Str)
		}
		dst = append(dst, byte(v.Type))
		dst = append(dst, v.Str...)
		return append(dst, '\r', '\n')
	case TypeBigNumber:
		dst = append(dst, byte(v.Type))
		dst = append(dst, v.Str...)
		return append(dst, '\r', '\n')
	case TypeInteger:
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, v.Int, 10)
		return append(dst, '\r', '\n')
	case TypeNull:
		return append(dst, '_', '\r', '\n')
	case TypeBoolean:
		if v.Int != 0 {
			return append(dst, '#', 't', '\r', '\n')
		}
		return append(dst, '#', 'f', '\r', '\n')
	case TypeDouble:
		dst = append(dst, ',')
		switch {
		case math.IsInf(v.Float, 1):
			dst = append(dst, "inf"...)
		case math.IsInf(v.Float, -1):
			dst = append(dst, "-inf"...)
		case math.IsNaN(v.Float):
			dst = append(dst, "nan"...)
		default:
			dst = strconv.AppendFloat(dst, v.Float, 'g', -1, 64)
		}
		return append(dst, '\r', '\n')
	case TypeBulkString, TypeBulkError:
		return appendBlob(appendHeader(dst, byte(v.Type), len(v.Str)), v.Str)
	case TypeVerbatim:
		dst = appendHeader(dst, '=', len(v.Str)+4)
		dst = append(dst, v.Format[:]...)
		dst = append(dst, ':')
		return appendBlob(dst, v.Str)
	case TypeMap:
		dst = appendHeader(dst, '%', len(v.Elems)/2)
	default: // array, set, push
		dst = appendHeader(dst, byte(v.Type), len(v.Elems))
	}
	for _, e := range v.Elems {
		dst = AppendValue(dst, e)
	}
	return dst
}

func appendBlob(dst, b []byte) []byte {
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

func hasNewline(b []byte) bool {
	for _, c := range b {
		if c == '\n' {
			return true
		}
	}
	return false
}
