//go:build unix

package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pubsublock/pubsublock"
)

// server is how to reach and authenticate to the Redis server, once the
// files the flags name have been read.
type server struct {
	password string      // overrides the URL's; "" keeps it
	tls      *tls.Config // nil: as the URL says
}

// loadServer reads the files of --password-file, --cacert, --cert and
// --key with readFile, and picks the password: --password-file, else the
// URL's, else $REDISCLI_AUTH. Errors are usage errors: they name the flag
// and the file, never the file's content.
func (o *options) loadServer(readFile func(string) ([]byte, error)) (server, error) {
	var s server
	switch {
	case o.passwordFile != "":
		b, err := readFile(o.passwordFile)
		if err != nil {
			return s, usagef("--password-file: %v", err)
		}
		// One trailing newline, as editors and echo leave it, is not part
		// of the password; other white space is.
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if len(b) == 0 {
			return s, usagef("--password-file %s is empty", o.passwordFile)
		}
		if bytes.ContainsAny(b, "\r\n") {
			return s, usagef("--password-file %s holds more than one line", o.passwordFile)
		}
		s.password = string(b)
	case o.envAuth != "" && !urlHasPassword(o.url):
		s.password = o.envAuth
	}
	if o.cacert == "" && o.cert == "" && o.sni == "" {
		return s, nil
	}
	s.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.sni}
	if o.cacert != "" {
		b, err := readFile(o.cacert)
		if err != nil {
			return s, usagef("--cacert: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return s, usagef("--cacert %s: no PEM certificate in it", o.cacert)
		}
		s.tls.RootCAs = pool
	}
	if o.cert != "" {
		certPEM, err := readFile(o.cert)
		if err != nil {
			return s, usagef("--cert: %v", err)
		}
		keyPEM, err := readFile(o.key)
		if err != nil {
			return s, usagef("--key: %v", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return s, usagef("--cert %s and --key %s: %v", o.cert, o.key, err)
		}
		s.tls.Certificates = []tls.Certificate{pair}
	}
	return s, nil
}

// config maps the options onto the library's Config.
func (o *options) config(s server, log *slog.Logger) pubsublock.Config {
	cfg := pubsublock.Config{
		URL:                 o.url,
		Password:            s.password,
		TLSConfig:           s.tls,
		DialTimeout:         o.dialTimeout,
		Timeout:             o.timeout,
		FailWhenLocked:      o.nonblock || o.timeout == 0,
		CheckInterval:       o.checkInterval,
		UnavailableTimeout:  o.unavailableTimeout,
		HealthCheckInterval: o.healthCheckInterval,
		Fencing:             o.fencing,
		Shared:              o.shared,
		Logger:              log,
	}
	if o.timeout < 0 {
		cfg.Timeout = -1 // the library's "until the context ends"
	}
	if o.healthCheckInterval == 0 {
		cfg.HealthCheckInterval = -1 // the library's "disabled"
	}
	return cfg
}

// tlsURL reports whether raw has one of the TLS schemes.
func tlsURL(raw string) bool {
	scheme, _, _ := strings.Cut(raw, "://")
	switch scheme {
	case "rediss", "rediss+cluster", "rediss+sentinel":
		return true
	}
	return false
}

// userinfo returns the user info of a URL: what comes between "://" and
// the last '@'. The library ends the user info at the last '@' (so that a
// password may hold '/', '?' and '@'); where a socket path holds a '@',
// this takes more than the user info, which errs on the safe side.
func userinfo(raw string) (info string, ok bool) {
	_, rest, found := strings.Cut(raw, "://")
	if !found {
		return "", false
	}
	i := strings.LastIndexByte(rest, '@')
	if i < 0 {
		return "", false
	}
	return rest[:i], true
}

// urlHasPassword reports whether raw gives a password: user:password@, or
// a lone user info, which the library takes for the password.
func urlHasPassword(raw string) bool {
	info, ok := userinfo(raw)
	if !ok {
		return false
	}
	if _, pass, hasColon := strings.Cut(info, ":"); hasColon {
		return pass != ""
	}
	return info != ""
}

// redactURL returns raw without its user info, which may hold a password:
// "redis://***@host:6379" for "redis://user:secret@host:6379".
func redactURL(raw string) string {
	info, ok := userinfo(raw)
	if !ok {
		return raw
	}
	scheme, _, _ := strings.Cut(raw, "://")
	return fmt.Sprintf("%s://***@%s", scheme, raw[len(scheme)+3+len(info)+1:])
}
