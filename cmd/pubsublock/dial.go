//go:build unix

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// statusTimeout bounds the status query, dial included.
const statusTimeout = 10 * time.Second

// redisConn is the few lines of client that status needs: RESP2 commands
// in one pipeline on one connection. Locks use the library's own client.
type redisConn struct {
	nc  net.Conn
	rd  *resp.Reader
	buf []byte
}

// dialURL connects to the server a URL names, as the library reads it:
// redis://, rediss:// (TLS) or unix://, with [[user]:password@] (a lone
// user info being the password, as redis-py reads it) sent as AUTH. The
// URL must have been checked by pubsublock.New. The database and protocol
// parts are ignored: pub/sub and CLIENT LIST span all databases, and RESP2
// is all status needs.
func dialURL(ctx context.Context, raw string) (*redisConn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL")
	}
	network, addr := "tcp", ""
	var tlsConfig *tls.Config
	switch u.Scheme {
	case "unix":
		network, addr = "unix", u.Path
	default: // redis, rediss
		host, port := u.Hostname(), u.Port()
		if host == "" {
			host = "127.0.0.1"
		}
		if port == "" {
			port = "6379"
		}
		addr = net.JoinHostPort(host, port)
		if u.Scheme == "rediss" {
			tlsConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if tlsConfig != nil {
		tc := tls.Client(nc, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		nc = tc
	}
	c := &redisConn{nc: nc, rd: resp.NewReader(nc, resp.Limits{})}
	if u.User != nil {
		auth := []string{"AUTH", u.User.Username()}
		if pw, ok := u.User.Password(); ok {
			auth = append(auth, pw)
			if auth[1] == "" {
				auth = []string{"AUTH", pw}
			}
		}
		vs, err := c.pipeline(auth)
		if err == nil {
			err = vs[0].Err()
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return c, nil
}

// pipeline sends cmds in one write and returns their replies, error
// replies included (see resp.Value.Err). The error is a transport or
// protocol failure, after which the connection is useless.
func (c *redisConn) pipeline(cmds ...[]string) ([]resp.Value, error) {
	c.buf = c.buf[:0]
	for _, args := range cmds {
		c.buf = resp.AppendCommand(c.buf, args...)
	}
	if _, err := c.nc.Write(c.buf); err != nil {
		return nil, err
	}
	vs := make([]resp.Value, len(cmds))
	for i := range vs {
		v, err := c.rd.Read()
		if err != nil {
			return nil, err
		}
		vs[i] = v.Clone() // Read's value lives only until the next Read
	}
	return vs, nil
}

// Close closes the connection.
func (c *redisConn) Close() error { return c.nc.Close() }
