//go:build unix

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

func TestLoadServer(t *testing.T) {
	files := map[string]string{
		"pw": "sesame\n", "crlf": "sesame\r\n", "empty": "\n", "two": "a\nb\n", "spaces": " se same \n",
	}
	readFile := func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
	for _, tc := range []struct {
		url, file, env string
		want           string // the password set; "!" for an error
	}{
		{"redis://h", "", "", ""},
		{"redis://h", "", "env", "env"},
		{"redis://:url@h", "", "env", ""},      // the URL's wins: Config keeps it
		{"redis://url@h", "", "env", ""},       // a lone user info is the password
		{"redis://user:@h", "", "env", "env"},  // a user without a password
		{"redis://user:p@ss@h", "", "env", ""}, // the user info ends at the last '@'
		{"redis://:url@h", "pw", "env", "sesame"},
		{"redis://h", "crlf", "", "sesame"},
		{"redis://h", "spaces", "", " se same "},
		{"redis://h", "empty", "", "!"},
		{"redis://h", "two", "", "!"},
		{"redis://h", "missing", "", "!"},
	} {
		o := &options{url: tc.url, passwordFile: tc.file, envAuth: tc.env}
		s, err := o.loadServer(readFile)
		got := s.password
		if err != nil {
			got = "!"
			var ue *usageError
			if !errors.As(err, &ue) || strings.Contains(err.Error(), "sesame") {
				t.Errorf("%+v: error %v: want a usage error that does not show the file", tc, err)
			}
		}
		if got != tc.want {
			t.Errorf("url %s, file %q, env %q: password %q, want %q", tc.url, tc.file, tc.env, got, tc.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://127.0.0.1:6379":                    "redis://127.0.0.1:6379",
		"redis://:secret@h:1/2":                     "redis://***@h:1/2",
		"rediss://user:se/cr@et@h":                  "rediss://***@h",
		"unix://u:p@/run/redis.sock":                "unix://***@/run/redis.sock",
		"redis+sentinel://:pw@a:1,b:2/mymaster":     "redis+sentinel://***@a:1,b:2/mymaster",
		"redis+cluster://user:pw@[::1]:7000,b:7001": "redis+cluster://***@[::1]:7000,b:7001",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// requirePass sets a password on s, as the harness cannot start a server
// with one (it PINGs).
func requirePass(t *testing.T, s *redistest.Server, pass string) {
	t.Helper()
	if _, err := s.Do("CONFIG", "SET", "requirepass", pass); err != nil {
		t.Fatal(err)
	}
}

func TestPasswordFromEnvironment(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	requirePass(t, s, "sesame")
	run := func(url, auth string, args ...string) result {
		cmd, stdout, stderr := prepare(t, url, args...)
		cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+auth)
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return wait(t, cmd, start, stdout, stderr)
	}
	run(s.URL(), "sesame", "status", "ch").want(t, 0)
	// The command inherits the environment, REDISCLI_AUTH included.
	r := run(s.URL(), "sesame", "ch", "sh", "-c", `echo "$REDISCLI_AUTH"`)
	r.want(t, 0)
	if r.stdout != "sesame\n" {
		t.Errorf("the command saw REDISCLI_AUTH %q", r.stdout)
	}
	r = run(s.URL(), "wrong", "status", "ch")
	r.want(t, 69)
	if strings.Contains(r.stderr, "wrong") {
		t.Errorf("the error shows the password: %s", r.stderr)
	}
	// A password in the URL wins.
	run("redis://:sesame@"+s.Addr(), "wrong", "status", "ch").want(t, 0)
}

func TestPasswordFile(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	requirePass(t, s, "sesame")
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("sesame\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	runBin(t, s.URL(), "--password-file", good, "status", "ch").want(t, 0)
	runBin(t, s.URL(), "--password-file", good, "ch", "true").want(t, 0)
	// It wins over the URL's password.
	runBin(t, "redis://:wrong@"+s.Addr(), "--password-file", good, "ch", "true").want(t, 0)
	r := runBin(t, s.URL(), "--password-file", bad, "ch", "touch", "ran")
	r.want(t, 69)
	if strings.Contains(r.stderr, "wrong") {
		t.Errorf("the error shows the password: %s", r.stderr)
	}
	r = runBin(t, s.URL(), "--password-file", filepath.Join(dir, "missing"), "status", "ch")
	r.want(t, 64)
	if !strings.Contains(r.stderr, "--password-file") {
		t.Errorf("stderr: %s", r.stderr)
	}
}

// tlsFiles are a CA and the certificates it signed, as PEM files.
type tlsFiles struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	otherCA                                          string // a CA that signed nothing here
}

// makeTLS writes a CA, a certificate for a server at 127.0.0.1 and named
// redis.test, and a client certificate, into a temporary directory.
func makeTLS(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	serial := int64(1)
	sign := func(tmpl, parent *x509.Certificate, pub, signer any) (*x509.Certificate, []byte) {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, der
	}
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		k := newKey()
		c, der := sign(&x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true,
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, &k.PublicKey, k)
		return c, k, der
	}
	ca, caKey, caDER := newCA("pubsublock test CA")
	_, _, otherDER := newCA("another CA")
	var f tlsFiles
	f.ca = write("ca.crt", "CERTIFICATE", caDER)
	f.otherCA = write("other-ca.crt", "CERTIFICATE", otherDER)
	sk := newKey()
	_, der := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "redis.test"}, DNSNames: []string{"redis.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &sk.PublicKey, caKey)
	f.serverCert, f.serverKey = write("server.crt", "CERTIFICATE", der), write("server.key", "PRIVATE KEY", keyDER(sk))
	ck := newKey()
	_, der = sign(&x509.Certificate{Subject: pkix.Name{CommonName: "client"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, &ck.PublicKey, caKey)
	f.clientCert, f.clientKey = write("client.crt", "CERTIFICATE", der), write("client.key", "PRIVATE KEY", keyDER(ck))
	return f
}

// tlsRedis starts a redis-server that also listens with TLS, and returns
// it and its TLS port. With mutual, it wants a client certificate.
func tlsRedis(t *testing.T, f tlsFiles, mutual bool) (*redistest.Server, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	auth := "no"
	if mutual {
		auth = "yes"
	}
	// The plain port stays open: the harness PINGs it.
	s := redistest.Redis(t, "--tls-port", strconv.Itoa(port), "--tls-cert-file", f.serverCert,
		"--tls-key-file", f.serverKey, "--tls-ca-cert-file", f.ca, "--tls-auth-clients", auth)
	return s, port
}

func TestTLS(t *testing.T) {
	t.Parallel()
	f := makeTLS(t)
	s, port := tlsRedis(t, f, false)
	url := "rediss://127.0.0.1:" + strconv.Itoa(port)
	runBin(t, url, "--cacert", f.ca, "status", "ch").want(t, 0)
	runBin(t, url, "--cacert", f.ca, "ch", "true").want(t, 0)
	// A holder through TLS, seen through the plain port.
	cmd, stdout, stderr := prepare(t, url, "--cacert", f.ca, "ch", "sleep", "2")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	holderLine(t, s, "ch")
	runBin(t, s.URL(), "-n", "ch", "touch", "ran").want(t, 1)
	wait(t, cmd, start, stdout, stderr).want(t, 0)

	// --sni names the host to check the certificate against.
	runBin(t, url, "--cacert", f.ca, "--sni", "redis.test", "status", "ch").want(t, 0)
	for _, tc := range []struct {
		args []string
		hint string
	}{
		{[]string{"status", "ch"}, "--cacert"},                        // the system does not trust the test CA
		{[]string{"--cacert", f.otherCA, "status", "ch"}, "--cacert"}, // nor does another CA
		{[]string{"--cacert", f.ca, "--sni", "other.test", "ch", "true"}, "--sni"},
	} {
		r := runBin(t, url, tc.args...)
		r.want(t, 69)
		if !strings.Contains(r.stderr, "hint: ") || !strings.Contains(r.stderr, tc.hint) {
			t.Errorf("pubsublock %q: stderr lacks a hint about %s:\n%s", tc.args, tc.hint, r.stderr)
		}
	}
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	f := makeTLS(t)
	_, port := tlsRedis(t, f, true)
	url := "rediss://127.0.0.1:" + strconv.Itoa(port)
	client := []string{"--cacert", f.ca, "--cert", f.clientCert, "--key", f.clientKey}
	runBin(t, url, append(client, "status", "ch")...).want(t, 0)
	runBin(t, url, append(client, "ch", "true")...).want(t, 0)
	r := runBin(t, url, "--cacert", f.ca, "status", "ch")
	r.want(t, 69)
	if !strings.Contains(r.stderr, "--cert") {
		t.Errorf("no hint at a client certificate:\n%s", r.stderr)
	}
	// A client certificate the server's CA did not sign: the test CA's
	// certificate is no client's.
	runBin(t, url, "--cacert", f.ca, "--cert", f.serverCert, "--key", f.serverKey, "status", "ch").want(t, 69)
}

func TestTLSUsageErrors(t *testing.T) {
	t.Parallel()
	f := makeTLS(t)
	for _, args := range [][]string{
		{"--url", "redis://127.0.0.1:1", "--cacert", f.ca, "status", "ch"}, // not a rediss URL
		{"--url", "rediss://127.0.0.1:1", "--cert", f.clientCert, "status", "ch"},
		{"--url", "rediss://127.0.0.1:1", "--key", f.clientKey, "status", "ch"},
		{"--url", "rediss://127.0.0.1:1", "--cacert", filepath.Join(t.TempDir(), "none"), "status", "ch"},
		{"--url", "rediss://127.0.0.1:1", "--cacert", f.clientKey, "status", "ch"}, // no certificate
		{"--url", "rediss://127.0.0.1:1", "--cert", f.clientCert, "--key", f.serverKey, "status", "ch"},
		{"--url", "rediss://127.0.0.1:1", "--dial-timeout", "0", "status", "ch"},
	} {
		r := runBin(t, "", args...)
		if r.code != 64 || !strings.HasPrefix(r.stderr, "pubsublock: ") {
			t.Errorf("pubsublock %q: exit %d, stderr %q; want 64 and a message", args, r.code, r.stderr)
		}
	}
}

// silentListener accepts connections and never answers, as a plain Redis
// port answers a TLS handshake, and returns its address.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

func TestDialTimeout(t *testing.T) {
	t.Parallel()
	addr := silentListener(t)
	for _, args := range [][]string{{"status", "ch"}, {"ch", "touch", "ran"}} {
		r := runBin(t, "redis://"+addr, append([]string{"--dial-timeout", "0.3"}, args...)...)
		r.want(t, 69)
		if r.elapsed > 3*time.Second {
			t.Errorf("pubsublock %q gave up after %v, want about 0.3s", args, r.elapsed)
		}
	}
}

// TestTLSToPlainPort: rediss:// against a plain Redis port, which never
// answers the TLS handshake: the error says what to check.
func TestTLSToPlainPort(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	for _, args := range [][]string{{"status", "ch"}, {"ch", "true"}} {
		r := runBin(t, "rediss://"+s.Addr(), append([]string{"--dial-timeout", "0.5"}, args...)...)
		r.want(t, 69)
		if !strings.Contains(r.stderr, "hint: ") || !strings.Contains(r.stderr, "TLS") || r.elapsed > 4*time.Second {
			t.Errorf("pubsublock %q after %v: stderr lacks the TLS hint:\n%s", args, r.elapsed, r.stderr)
		}
	}
}
