package pubsublock

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url           string
		network, addr string
		user, pass    string
		db            int
		tls, resp2    bool
	}{
		{url: "redis://localhost", network: "tcp", addr: "localhost:6379"},
		{url: "redis://127.0.0.1:7000/3", network: "tcp", addr: "127.0.0.1:7000", db: 3},
		{url: "redis://u:p%40ss@h:1?db=4", network: "tcp", addr: "h:1", user: "u", pass: "p@ss", db: 4},
		{url: "redis://secret@h", network: "tcp", addr: "h:6379", pass: "secret"},
		{url: "redis://:secret@h", network: "tcp", addr: "h:6379", pass: "secret"},
		{url: "rediss://h:6380", network: "tcp", addr: "h:6380", tls: true},
		{url: "redis://[::1]:7000", network: "tcp", addr: "[::1]:7000"},
		{url: "redis://h?protocol=2", network: "tcp", addr: "h:6379", resp2: true},
		{url: "unix:///run/redis.sock?db=2", network: "unix", addr: "/run/redis.sock", db: 2},
		{url: "unix://u:pw@/tmp/r.sock", network: "unix", addr: "/tmp/r.sock", user: "u", pass: "pw"},
		{url: "unix:/tmp/r.sock", network: "unix", addr: "/tmp/r.sock"},
		{url: "REDIS://h:1/2", network: "tcp", addr: "h:1", db: 2},
		{url: "redis://:7000", network: "tcp", addr: "127.0.0.1:7000"},
		{url: "redis://h:", network: "tcp", addr: "h:6379"},
		{url: "redis://[fe80::1%25eth0]:1", network: "tcp", addr: "[fe80::1%eth0]:1"},
	} {
		dc, err := ClientConfig{URL: tc.url}.dialConfig()
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if dc.network != tc.network || dc.addr != tc.addr || dc.username != tc.user || dc.password != tc.pass ||
			dc.db != tc.db || (dc.tls != nil) != tc.tls || dc.resp2 != tc.resp2 {
			t.Errorf("%s: got %+v", tc.url, dc)
		}
	}
}

func TestBadURL(t *testing.T) {
	for _, u := range []string{
		"http://h", "redis://", "redis://h:notaport", "redis://h:99999", "redis://h/x", "redis://h/1?db=2",
		"redis://h?db=-1", "redis://h?timeout=1", "redis://h?protocol=4", "unix://", "redis://user:hunter2@h:p0rt",
		"redis://user:hunter2@[::1", "%%", "redis://h?db=%zz", "redis://h#f", "redis://::1", "redis://[h]:1",
		"redis://[::1]x", "redis://h h", "unix:tmp/r.sock",
	} {
		_, err := ClientConfig{URL: u}.dialConfig()
		if err == nil {
			t.Errorf("%s: no error", u)
			continue
		}
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v does not match ErrConfig", u, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error reveals the password: %v", u, err)
		}
	}
}

// urlSecrets are passwords with the characters that end a part of a URL,
// as base64 and generated passwords have them. Each is made of three-byte
// pieces that appear nowhere else, so that an error repeating any part of
// one is caught.
var urlSecrets = []string{
	"Zq1/Xw2",
	"Zq1?Xw2",
	"Zq1#Xw2",
	"Zq1@Xw2",
	"Zq1:Xw2",
	"Zq1/Xw2?Yv3#Ut4@Ss5:Rr6",
	"Zq1Xw2Yv3",
	"aGVs/bG8+d29y?bGQ=",
	"/Zq1Xw2",
	"Zq1Xw2@",
	"Zq1%2FXw2", // percent-encoded: the password is "Zq1/Xw2"
	"Zq1%zzXw2", // not valid percent-encoding
}

// urlUser is the user name of the URLs of the secrets test, secret too.
const urlUser = "Usr9Qp8"

// urlShapes are URLs with "{U}" where the user info goes: good ones and
// bad ones of every scheme.
var urlShapes = []string{
	"redis://{U}@127.0.0.1:6379",
	"redis://{U}@127.0.0.1:6379/3",
	"redis://{U}@h/3?protocol=2",
	"rediss://{U}@[::1]:6380",
	"unix://{U}@/tmp/r.sock?db=2",
	"redis+cluster://{U}@h1:7000,h2:7001",
	"rediss+cluster://{U}@[::1]:7000,h2",
	"redis+sentinel://{U}@s1:26379,s2/mymaster?db=1",
	"rediss+sentinel://{U}@s1/m",

	"redis://{U}@",
	"redis://{U}@h:p0rt",
	"redis://{U}@h:99999",
	"redis://{U}@h:",
	"redis://{U}@[::1",
	"redis://{U}@::1:6379",
	"redis://{U}@h/x",
	"redis://{U}@h/1/2",
	"redis://{U}@h/-1",
	"redis://{U}@h/1?db=2",
	"redis://{U}@h?db=x",
	"redis://{U}@h?timeout=1",
	"redis://{U}@h?protocol=9",
	"redis://{U}@h?db=%zz",
	"redis://{U}@h#frag",
	"redis://{U}@h h",
	"rediss://{U}@h:x/0",
	"REDIS://{U}@h:x",
	"redis:{U}@h",
	"redis:/{U}@h",
	"{U}@h:6379",
	"{U}@h",
	"http://{U}@h",
	"unix://{U}@",
	"unix://{U}@tmp/r.sock",
	"unix://{U}@/tmp/r.sock?db=x",
	"unix://{U}@/tmp/r.sock?x=1",
	"redis+cluster://{U}@",
	"redis+cluster://{U}@h1:7000,h2:x",
	"redis+cluster://{U}@h1:7000,,h2",
	"redis+cluster://{U}@h1:7000/3",
	"redis+cluster://{U}@h1:7000?db=1",
	"rediss+cluster://{U}@h1:7000?x=1",
	"redis+cluster://{U}@h1:7000#frag",
	"redis+cluster://{U}@[::1:7000",
	"redis+sentinel://{U}@s1:26379",
	"redis+sentinel://{U}@s1:26379/",
	"redis+sentinel://{U}@s1:x/m",
	"redis+sentinel://{U}@s1/a/b",
	"redis+sentinel://{U}@s1/m?db=x",
	"redis+sentinel://{U}@s1/m%zz",
	"rediss+sentinel://{U}@:1/m",
	"redis+foo://{U}@h",
}

// urlPieces returns the parts of s an error must not repeat: s, and its
// runs of letters and digits of three bytes or more.
func urlPieces(s string) []string {
	pieces := []string{s}
	for p := range strings.FieldsFuncSeq(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}) {
		if len(p) >= 3 {
			pieces = append(pieces, p)
		}
	}
	return pieces
}

// No error about a URL repeats its user info, whatever the password holds
// and whatever else is wrong with the URL.
func TestURLErrorsKeepSecrets(t *testing.T) {
	for _, shape := range urlShapes {
		for _, secret := range urlSecrets {
			for _, userinfo := range []string{urlUser + ":" + secret, ":" + secret, secret} {
				raw := strings.ReplaceAll(shape, "{U}", userinfo)
				_, err := NewClient(ClientConfig{URL: raw})
				if err == nil {
					continue
				}
				if !errors.Is(err, ErrConfig) {
					t.Errorf("%s: %v does not match ErrConfig", raw, err)
				}
				for _, p := range urlPieces(userinfo) {
					if strings.Contains(err.Error(), p) {
						t.Errorf("%s: the error repeats %q: %v", raw, p, err)
						break
					}
				}
			}
		}
	}
}

// A password may hold '/', '?', '#', '@' and ':' unescaped: the user info
// ends at the last '@' (the last "@/" in a unix:// URL).
func TestURLRawPasswords(t *testing.T) {
	for _, secret := range urlSecrets {
		want, err := url.PathUnescape(secret)
		if err != nil {
			continue // the secrets test covers it
		}
		for _, tc := range []struct {
			shape, addr string
			db          int
			seeds       []string
			master      string
		}{
			{shape: "redis://{U}@127.0.0.1:6379", addr: "127.0.0.1:6379"},
			{shape: "redis://{U}@h/3?protocol=2", addr: "h:6379", db: 3},
			{shape: "rediss://{U}@[::1]:6380/2", addr: "[::1]:6380", db: 2},
			{shape: "unix://{U}@/tmp/r.sock?db=2", addr: "/tmp/r.sock", db: 2},
			{shape: "redis+cluster://{U}@h1:7000,h2", addr: "h1:7000", seeds: []string{"h1:7000", "h2:6379"}},
			{shape: "redis+sentinel://{U}@s1,s2:1/m?db=4", addr: "s1:26379", db: 4, master: "m"},
		} {
			for _, user := range []string{urlUser, ""} {
				userinfo := user + ":" + secret
				if user == "" && !strings.Contains(secret, ":") {
					userinfo = secret // a lone password
				}
				raw := strings.ReplaceAll(tc.shape, "{U}", userinfo)
				cc := ClientConfig{URL: raw}
				dc, err := cc.dialConfig()
				if err != nil {
					t.Errorf("%s: %v", raw, err)
					continue
				}
				topo, err := cc.topology()
				if err != nil {
					t.Errorf("%s: %v", raw, err)
					continue
				}
				if dc.username != user || dc.password != want || dc.addr != tc.addr || dc.db != tc.db ||
					!slices.Equal(topo.cluster, tc.seeds) || topo.master != tc.master {
					t.Errorf("%s: user %q password %q addr %q db %d seeds %q master %q", raw,
						dc.username, dc.password, dc.addr, dc.db, topo.cluster, topo.master)
				}
			}
		}
	}
}

// Errors about a URL say what is wrong and what a good URL looks like.
func TestURLErrorsExplain(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want []string // in the error
		not  []string // not in the error
	}{
		{"redis://127.0.0.1:abc", []string{"port is not a number", "redis://[user:password@]host:port/db"}, []string{"not a valid URL"}},
		{"redis://h:70000", []string{"port is not a number", "redis://[user:password@]host:port/db"}, nil},
		{"127.0.0.1:6379", []string{"no scheme", "redis://127.0.0.1:6379"}, []string{"not a valid URL"}},
		{"localhost:6379", []string{"no scheme", "redis://localhost:6379"}, []string{`scheme "localhost"`}},
		{"[::1]:6379", []string{"no scheme", "redis://[::1]:6379"}, nil},
		{"u:pw@localhost:6379", []string{"no scheme", "redis://"}, []string{"u:pw", "localhost"}},
		{"unix://tmp/x.sock", []string{"absolute", "unix:///tmp/x.sock"}, nil},
		{"unix://u:pw@tmp/x.sock", []string{"absolute", "unix://[user:password@]/path/to/socket"}, []string{"pw", "tmp/x.sock"}},
		{"unix://", []string{"needs a socket path", "unix://[user:password@]/path/to/socket"}, nil},
		{"http://h", []string{"scheme not supported", "redis://"}, nil},
		{"u://pw@h", []string{"scheme not supported"}, []string{`"u"`, "pw"}},
		{"redis:h", []string{"redis://"}, nil},
		{"redis://h/x", []string{"database number", "redis://[user:password@]host:port/db"}, nil},
		{"redis://h?protocol=4", []string{"protocol", "2 or 3"}, nil},
		{"redis://h?timeout=1", []string{`"timeout"`, "db, protocol"}, nil},
		{"redis://::1", []string{"IPv6", "[::1]"}, nil},
		{"redis+sentinel://s1", []string{"master name", "redis+sentinel://[user:password@]host:port,host:port/mastername"}, nil},
		{"redis+cluster://h:x", []string{"port is not a number", "redis+cluster://[user:password@]host:port,host:port"}, nil},
	} {
		_, err := NewClient(ClientConfig{URL: tc.url})
		if err == nil {
			t.Errorf("%s: no error", tc.url)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q not in the error: %v", tc.url, w, err)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(err.Error(), n) {
				t.Errorf("%s: %q in the error: %v", tc.url, n, err)
			}
		}
	}
}

// A '@' after the user info must be written %40, except in a unix:// URL
// without user info.
func TestURLAtSigns(t *testing.T) {
	for _, tc := range []struct{ url, addr, user, pass, master string }{
		{url: "unix:///run/a@b.sock", addr: "/run/a@b.sock"},
		{url: "unix://u:p@/run/a%40b.sock", addr: "/run/a@b.sock", user: "u", pass: "p"},
		{url: "unix:///p@/run/r.sock", addr: "/run/r.sock", pass: "/p"},
		{url: "redis+sentinel://u:p@h/my%40master", addr: "h:26379", user: "u", pass: "p", master: "my@master"},
	} {
		dc, topo, err := parseURL(tc.url, dialConfig{})
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if dc.addr != tc.addr || dc.username != tc.user || dc.password != tc.pass || topo.master != tc.master {
			t.Errorf("%s: addr %q user %q password %q master %q", tc.url, dc.addr, dc.username, dc.password, topo.master)
		}
	}
	if _, _, err := parseURL("unix://u:p@/run/a@b.sock", dialConfig{}); !errors.Is(err, ErrConfig) {
		t.Errorf("a '@' in the socket path after user info: %v", err)
	}
}

// FuzzURLUserinfo checks that the user info of a URL changes nothing but
// the user and password it gives: an error about the URL is the same
// whatever the user info (so it cannot repeat it), and a good URL gives
// back the user info percent-decoded.
func FuzzURLUserinfo(f *testing.F) {
	schemes := []string{"redis", "rediss", "unix", "redis+cluster", "rediss+sentinel"}
	f.Add(uint8(0), "alice:1234/Secr3tTail", "127.0.0.1:6379")
	f.Add(uint8(0), "u:p", "h:x/y?db=1")
	f.Add(uint8(2), "/pw?#:", "/tmp/r.sock?db=2")
	f.Add(uint8(2), ":pw", "tmp/r.sock")
	f.Add(uint8(3), "alice:AbC/dEf", "h:7000,h2")
	f.Add(uint8(4), ":sEcReT?x", "h:26379/m?db=x")
	f.Fuzz(func(t *testing.T, scheme uint8, userinfo, tail string) {
		if strings.Contains(tail, "@") {
			t.Skip("a '@' in the tail moves the end of the user info")
		}
		if _, _, err := parseUserinfo(userinfo); err != nil {
			t.Skip("the user info is not valid percent-encoding")
		}
		s := schemes[int(scheme)%len(schemes)]
		if s == "unix" && strings.HasPrefix(userinfo, "/") && tail != "" && !strings.HasPrefix(tail, "/") {
			t.Skip("unix:///x@y is the socket /x@y")
		}
		dc, topo, err := parseURL(s+"://"+userinfo+"@"+tail, dialConfig{})
		_, topo2, err2 := parseURL(s+"://u:p@"+tail, dialConfig{})
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("with user info %q: %v; with u:p: %v", userinfo, err, err2)
		}
		if err != nil {
			return
		}
		user, pass, _ := parseUserinfo(userinfo)
		if dc.username != user || dc.password != pass || topo.master != topo2.master {
			t.Fatalf("user %q password %q master %q, want %q %q %q", dc.username, dc.password, topo.master, user, pass, topo2.master)
		}
	})
}
