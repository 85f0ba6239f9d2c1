package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// commandTimeout bounds one command of the private client, dial included.
const commandTimeout = 10 * time.Second

// Bounds on what the private client accepts from the wire. They are far
// above what the harness asks for, and only keep a broken server from
// making a test allocate without limit.
const (
	maxLine  = 64 << 10 // longest simple line
	maxBulk  = 64 << 20 // largest bulk string
	maxCount = 1 << 20  // most elements in one aggregate
	maxDepth = 16       // deepest nesting of aggregates
)

// do sends one command to addr on a fresh connection and returns its reply:
// a string (simple, bulk, verbatim, double or big number), an int64, a bool,
// nil, or a []any of those. A top-level error reply is returned as the error;
// nested error replies stay in the slice as error values.
func do(addr string, args ...string) (any, error) {
	vs, err := pipeline(addr, args)
	if err != nil {
		return nil, err
	}
	if e, ok := vs[0].(replyError); ok {
		return nil, e
	}
	return vs[0], nil
}

// pipeline sends commands to addr on a fresh connection, all at once, and
// returns their replies in order, error replies included as error values.
func pipeline(addr string, cmds ...[]string) ([]any, error) {
	c, err := net.DialTimeout("tcp", addr, commandTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(commandTimeout)); err != nil {
		return nil, err
	}
	var buf []byte
	for _, args := range cmds {
		buf = appendCommand(buf, args...)
	}
	if _, err := c.Write(buf); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	vs := make([]any, len(cmds))
	for i, args := range cmds {
		if vs[i], err = readReply(r, 0); err != nil {
			return nil, fmt.Errorf("redistest: %s %s: %w", addr, strings.Join(args, " "), err)
		}
	}
	return vs, nil
}

// replyError is an error reply from the server, its text as sent, e.g.
// "ERR unknown command".
type replyError string

func (e replyError) Error() string { return string(e) }

// appendCommand appends args to dst as a RESP array of bulk strings.
func appendCommand(dst []byte, args ...string) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

var errProtocol = errors.New("protocol error")

// readLine reads one CRLF-terminated line and returns it without the CRLF.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b)+len(chunk) > maxLine {
			return "", fmt.Errorf("%w: line longer than %d bytes", errProtocol, maxLine)
		}
		b = append(b, chunk...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	if len(b) < 2 || b[len(b)-2] != '\r' {
		return "", fmt.Errorf("%w: line not ended by CRLF", errProtocol)
	}
	return string(b[:len(b)-2]), nil
}

// readLength parses the length or count of a bulk or aggregate header; -1
// means nil.
func readLength(s string, limit int64) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < -1 || n > limit {
		return 0, fmt.Errorf("%w: bad length %q", errProtocol, s)
	}
	return n, nil
}

// readReply reads one RESP2 or RESP3 value.
func readReply(r *bufio.Reader, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", errProtocol, maxDepth)
	}
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if line == "" {
		return nil, fmt.Errorf("%w: empty line", errProtocol)
	}
	kind, rest := line[0], line[1:]
	switch kind {
	case '+', ',', '(':
		return rest, nil
	case '-':
		return replyError(rest), nil
	case ':':
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: bad integer %q", errProtocol, rest)
		}
		return n, nil
	case '_':
		return nil, nil
	case '#':
		switch rest {
		case "t":
			return true, nil
		case "f":
			return false, nil
		}
		return nil, fmt.Errorf("%w: bad boolean %q", errProtocol, rest)
	case '$', '=', '!':
		n, err := readLength(rest, maxBulk)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		if b[n] != '\r' || b[n+1] != '\n' {
			return nil, fmt.Errorf("%w: bulk string not ended by CRLF", errProtocol)
		}
		s := string(b[:n])
		switch kind {
		case '!':
			return replyError(s), nil
		case '=':
			// A verbatim string starts with its format, e.g. "txt:".
			if len(s) < 4 || s[3] != ':' {
				return nil, fmt.Errorf("%w: verbatim string without format", errProtocol)
			}
			return s[4:], nil
		}
		return s, nil
	case '*', '~', '>', '%', '|':
		n, err := readLength(rest, maxCount)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		if kind == '%' || kind == '|' {
			n *= 2 // maps and attributes hold key-value pairs
		}
		vs := make([]any, 0, min(n, 1024))
		for range n {
			v, err := readReply(r, depth+1)
			if err != nil {
				return nil, err
			}
			vs = append(vs, v)
		}
		if kind == '|' {
			// Attributes annotate the value that follows; skip them.
			return readReply(r, depth)
		}
		return vs, nil
	}
	return nil, fmt.Errorf("%w: unknown type byte %q", errProtocol, kind)
}

// render writes a reply as text: strings as they are, integers in decimal,
// nil as the empty string, booleans as "true" or "false", error values as
// "(error) " and their text, and the elements of an aggregate one per line,
// nested aggregates flattened.
func render(v any) string {
	var b strings.Builder
	renderTo(&b, v)
	return b.String()
}

func renderTo(b *strings.Builder, v any) {
	switch v := v.(type) {
	case nil:
	case string:
		b.WriteString(v)
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case error:
		b.WriteString("(error) ")
		b.WriteString(v.Error())
	case []any:
		for i, e := range v {
			if i > 0 {
				b.WriteByte('\n')
			}
			renderTo(b, e)
		}
	default:
		fmt.Fprint(b, v)
	}
}

// pairs turns a flat key-value reply, such as one entry of SENTINEL
// REPLICAS, into a map. Values that are not strings are rendered.
func pairs(v any) map[string]string {
	vs, _ := v.([]any)
	m := make(map[string]string, len(vs)/2)
	for i := 0; i+1 < len(vs); i += 2 {
		m[render(vs[i])] = render(vs[i+1])
	}
	return m
}

// infoField returns the value of field in the text of an INFO or CLUSTER
// INFO reply ("field:value" lines), and whether it was there.
func infoField(info, field string) (string, bool) {
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":")
		if ok && k == field {
			return v, true
		}
	}
	return "", false
}
