package resp

import (
	"bytes"
	"math"
	"strconv"
)

// Type is the RESP type byte of a value.
type Type byte

// The RESP2 and RESP3 types. RESP2 null bulk strings ("$-1") and null arrays
// ("*-1") are read as [TypeNull].
const (
	TypeSimpleString Type = '+'
	TypeError        Type = '-'
	TypeInteger      Type = ':'
	TypeBulkString   Type = '$'
	TypeArray        Type = '*'
	TypeNull         Type = '_'
	TypeBoolean      Type = '#'
	TypeDouble       Type = ','
	TypeBigNumber    Type = '('
	TypeBulkError    Type = '!'
	TypeVerbatim     Type = '='
	TypeMap          Type = '%'
	TypeSet          Type = '~'
	TypeAttribute    Type = '|'
	TypePush         Type = '>'
)

// String returns the RESP3 spec's name of the type, e.g. "bulk string".
func (t Type) String() string {
	switch t {
	case TypeSimpleString:
		return "simple string"
	case TypeError:
		return "simple error"
	case TypeInteger:
		return "integer"
	case TypeBulkString:
		return "bulk string"
	case TypeArray:
		return "array"
	case TypeNull:
		return "null"
	case TypeBoolean:
		return "boolean"
	case TypeDouble:
		return "double"
	case TypeBigNumber:
		return "big number"
	case TypeBulkError:
		return "bulk error"
	case TypeVerbatim:
		return "verbatim string"
	case TypeMap:
		return "map"
	case TypeSet:
		return "set"
	case TypeAttribute:
		return "attribute"
	case TypePush:
		return "push"
	}
	return "type " + strconv.QuoteRune(rune(t))
}

// Value is one decoded RESP value. Which fields are meaningful depends on
// Type:
//
//   - simple string, simple error, bulk string, bulk error, big number: Str
//     (a big number keeps its decimal text);
//   - verbatim string: Str is the text and Format the three-byte format,
//     such as "txt";
//   - integer: Int; boolean: Int is 1 for true and 0 for false;
//   - double: Float;
//   - array, set, push: Elems;
//   - map: Elems holds the pairs in wire order, key then value
//     (len(Elems) is twice the number of entries); never a Go map, so
//     duplicate keys and order survive;
//   - null: nothing.
//
// Attrs holds the key/value pairs of a RESP3 attribute that preceded the
// value, in the same pair layout as a map, when the Reader keeps attributes.
//
// Values returned by a [Reader] share its buffers: see [Value.Clone].
//
// A Value is 96 bytes on 64-bit platforms (the fields are ordered so that
// only Type and Format share padding): a reply of many small values, such
// as nulls of 3 bytes each, takes many times its size on the wire, which
// [Limits].MaxReplyValues bounds.
type Value struct {
	Type   Type
	Format [3]byte
	Int    int64
	Float  float64
	Str    []byte
	Elems  []Value
	Attrs  []Value
}

// Err returns the value as an [Error] when it is a simple or bulk error, and
// nil otherwise.
func (v Value) Err() error {
	if v.Type == TypeError || v.Type == TypeBulkError {
		return Error(v.Str)
	}
	return nil
}

// IsNull reports whether v is a RESP3 null or a RESP2 null bulk or array.
func (v Value) IsNull() bool { return v.Type == TypeNull }

// Clone returns a deep copy of v that shares no memory with the Reader.
func (v Value) Clone() Value {
	c := v
	if v.Str != nil {
		c.Str = bytes.Clone(v.Str)
	}
	c.Elems = cloneValues(v.Elems)
	c.Attrs = cloneValues(v.Attrs)
	return c
}

func cloneValues(vs []Value) []Value {
	if vs == nil {
		return nil
	}
	out := make([]Value, len(vs))
	for i, e := range vs {
		out[i] = e.Clone()
	}
	return out
}

// Equal reports whether v and w are the same value: same type, contents and
// attributes. Doubles compare by value, with NaN equal to NaN.
func (v Value) Equal(w Value) bool {
	if v.Type != w.Type || v.Format != w.Format || !bytes.Equal(v.Str, w.Str) || v.Int != w.Int {
		return false
	}
	if v.Type == TypeDouble && v.Float != w.Float && !(math.IsNaN(v.Float) && math.IsNaN(w.Float)) {
		return false
	}
	return equalValues(v.Elems, w.Elems) && equalValues(v.Attrs, w.Attrs)
}

func equalValues(a, b []Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// String renders v for messages and tests, e.g. `["jobs" 1]` for a NUMSUB
// reply. It is not RESP; use [AppendValue] for that.
func (v Value) String() string { return string(v.appendText(nil)) }

func (v Value) appendText(b []byte) []byte {
	switch v.Type {
	case TypeSimpleString, TypeBulkString, TypeVerbatim:
		return strconv.AppendQuote(b, string(v.Str))
	case TypeError, TypeBulkError:
		b = append(b, "(error "...)
		b = strconv.AppendQuote(b, string(v.Str))
		return append(b, ')')
	case TypeBigNumber:
		return append(b, v.Str...)
	case TypeInteger:
		return strconv.AppendInt(b, v.Int, 10)
	case TypeBoolean:
		return strconv.AppendBool(b, v.Int != 0)
	case TypeDouble:
		return strconv.AppendFloat(b, v.Float, 'g', -1, 64)
	case TypeNull:
		return append(b, "nil"...)
	case TypeArray, TypeSet, TypePush, TypeMap:
		open, end := byte('['), byte(']')
		switch v.Type {
		case TypeSet:
			open, end = '{', '}'
		case TypePush:
			b = append(b, '>')
		case TypeMap:
			open, end = '(', ')'
		}
		b = append(b, open)
		for i, e := range v.Elems {
			if i > 0 {
				b = append(b, ' ')
			}
			b = e.appendText(b)
		}
		return append(b, end)
	}
	return append(b, v.Type.String()...)
}
