package pubsublock

import (
	"crypto/tls"
	"errors"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The forms of Config.URL, as errors show them.
const (
	redisForm    = "redis://[user:password@]host:port/db (rediss:// for TLS)"
	unixForm     = "unix://[user:password@]/path/to/socket?db=N"
	clusterForm  = "redis+cluster://[user:password@]host:port,host:port"
	sentinelForm = "redis+sentinel://[user:password@]host:port,host:port/mastername?db=N"
	anyForm      = redisForm + ", " + unixForm + ", " + clusterForm + " or " + sentinelForm
)

// parseURL reads a URL of the forms that Config.URL, Config.ClusterAddrs
// and Config.SentinelAddrs document into dc and a topology. It parses by
// hand, as net/url refuses a list of hosts with IPv6 literals, and cuts
// the user info at the first '/', '?' or '#'.
//
// The user info ends at the last '@', so a password may hold '/', '?',
// '#', '@' and ':' as they are; a '@' after the user info, in a socket
// path or a master name, must then be written %40. (Only unix:///path
// may hold a '@' that no '/' follows: with no user info, nothing is
// ambiguous.) redis-cli cuts the user info at the first '@', and redis-py
// and go-redis, which use net/url, at the first '/', '?' or '#'.
//
// Errors say which part of the URL is wrong and what a valid URL looks
// like. They repeat nothing of the URL but the names of query parameters,
// which come after the user info, and a URL that is plainly host:port
// with no '@', which they suggest with redis:// in front: never the user
// info, nor text that might hold it.
func parseURL(raw string, dc dialConfig) (dialConfig, topology, error) {
	var t topology
	scheme, rest, err := cutScheme(raw)
	if err != nil {
		return dc, t, err
	}
	form := redisForm
	switch scheme {
	case "unix":
		form = unixForm
	case "redis+cluster", "rediss+cluster":
		form = clusterForm
	case "redis+sentinel", "rediss+sentinel":
		form = sentinelForm
	}
	bad := func(what string) error {
		return configErr("URL %s: want %s", what, form)
	}
	unix := scheme == "unix"
	switch {
	case strings.HasPrefix(rest, "//"):
		rest = rest[2:]
		i := strings.LastIndexByte(rest, '@')
		if unix && i >= 0 && i+1 < len(rest) && rest[i+1] != '/' && strings.HasPrefix(rest, "/") {
			i = -1 // unix:///path/with@in/it
		}
		if i >= 0 {
			if dc.username, dc.password, err = parseUserinfo(rest[:i]); err != nil {
				return dc, t, err
			}
			rest = rest[i+1:]
		}
	case unix && strings.HasPrefix(rest, "/"): // unix:/path, which net/url reads too
	default:
		return dc, t, bad(`needs "//" after the scheme`)
	}
	if strings.Contains(rest, "#") {
		return dc, t, bad("fragment (#) not supported")
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		hosts, path = rest[:i], rest[i:]
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return dc, t, bad("query is not valid")
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if k != "db" && k != "protocol" {
			return dc, t, configErr("URL query parameter %q not supported (db, protocol)", k)
		}
	}
	switch q.Get("protocol") {
	case "", "3":
	case "2":
		dc.resp2 = true
	default:
		return dc, t, bad("protocol must be 2 or 3")
	}
	db := q.Get("db")

	switch scheme {
	case "unix":
		if hosts != "" {
			if !strings.Contains(raw, "@") { // no user info to repeat
				return dc, t, configErr("URL socket path must be absolute, after unix:// and no host: did you mean unix:///%s?",
					raw[len("unix://"):])
			}
			return dc, t, bad("socket path must be absolute, after unix:// and no host")
		}
		if path == "" {
			return dc, t, bad("needs a socket path")
		}
		p, err := url.PathUnescape(path)
		if err != nil {
			return dc, t, bad("socket path is not valid percent-encoding")
		}
		dc.network, dc.addr = "unix", p
	case "redis", "rediss":
		if hosts == "" {
			return dc, t, bad("needs a host")
		}
		addr, err := hostPort(hosts, "127.0.0.1", "6379")
		if err != nil {
			return dc, t, bad(err.Error())
		}
		dc.network, dc.addr = "tcp", addr
		if p := strings.Trim(path, "/"); p != "" {
			if db != "" {
				return dc, t, bad("gives the db twice, as path and as query")
			}
			if db, err = url.PathUnescape(p); err != nil {
				return dc, t, bad("db is not a database number")
			}
		}
	default:
		cluster := strings.HasSuffix(scheme, "+cluster")
		defaultPort := "26379"
		if cluster {
			defaultPort = "6379"
		}
		var addrs []string
		for h := range strings.SplitSeq(hosts, ",") {
			if h == "" {
				return dc, t, bad("has an empty host in its host list")
			}
			addr, err := hostPort(h, "", defaultPort)
			if err != nil {
				return dc, t, bad(err.Error())
			}
			addrs = append(addrs, addr)
		}
		path = strings.Trim(path, "/")
		if cluster {
			if path != "" || q.Has("db") {
				return dc, t, bad("takes no db: a Redis Cluster has only database 0")
			}
			t.cluster = addrs
		} else {
			if path == "" || strings.Contains(path, "/") {
				return dc, t, bad("needs the master name as its path")
			}
			if t.master, err = url.PathUnescape(path); err != nil {
				return dc, t, bad("master name is not valid percent-encoding")
			}
			t.sentinels = addrs
		}
		dc.network, dc.addr = "tcp", addrs[0]
	}
	if db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return dc, t, bad("db is not a database number")
		}
		dc.db = n
	}
	if strings.HasPrefix(scheme, "rediss") {
		dc.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return dc, t, nil
}

// cutScheme returns the scheme of raw in lower case, if parseURL reads
// it, and what follows its ':'.
func cutScheme(raw string) (scheme, rest string, err error) {
	if i := strings.IndexByte(raw, ':'); i > 0 {
		scheme, rest = strings.ToLower(raw[:i]), raw[i+1:]
		switch scheme {
		case "redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel":
			return scheme, rest, nil
		}
		if isScheme(scheme) && strings.HasPrefix(rest, "//") {
			// Not repeated: in "user://password@host" it is a user name.
			return "", "", configErr("URL scheme not supported: want %s", anyForm)
		}
	}
	if !strings.ContainsAny(raw, "@/?#,") {
		if host, port, err := net.SplitHostPort(raw); err == nil && host != "" && port != "" {
			if _, err := hostPort(raw, "", ""); err == nil {
				return "", "", configErr("URL has no scheme: did you mean redis://%s?", raw)
			}
		}
	}
	return "", "", configErr("URL has no scheme: want %s", anyForm)
}

// isScheme reports whether s is a scheme name of RFC 3986: a letter, then
// letters, digits, '+', '-' and '.'.
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// parseUserinfo reads [user:]password, percent-decoded. A lone user info
// is the password, as redis-py and redis-cli read it.
func parseUserinfo(s string) (user, password string, err error) {
	user, password, hasPassword := strings.Cut(s, ":")
	var err1, err2 error
	user, err1 = url.PathUnescape(user)
	password, err2 = url.PathUnescape(password)
	if err1 != nil || err2 != nil {
		return "", "", configErr("URL user info is not valid percent-encoding (write %% as %%25)")
	}
	if !hasPassword {
		user, password = "", user
	}
	return user, password, nil
}

// hostPort checks a host[:port] of a URL and returns it as host:port, with
// defaultHost and defaultPort for what it leaves out (an empty default is
// required). An IPv6 address is in brackets; a zone in it is written %25.
// Its errors repeat nothing of h.
func hostPort(h, defaultHost, defaultPort string) (string, error) {
	var host, port string
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", errors.New("IPv6 address lacks its closing ']'")
		}
		var err error
		if host, err = url.PathUnescape(h[1:end]); err != nil {
			return "", errors.New("IPv6 address in brackets is not valid")
		}
		ip, _, _ := strings.Cut(host, "%")
		if !strings.Contains(ip, ":") || net.ParseIP(ip) == nil {
			return "", errors.New("host in brackets is not an IPv6 address")
		}
		switch after := h[end+1:]; {
		case after == "":
		case after[0] == ':':
			port = after[1:]
		default:
			return "", errors.New("host has text after its ']'")
		}
	} else {
		host, port, _ = strings.Cut(h, ":")
		if strings.Contains(port, ":") {
			return "", errors.New("IPv6 address needs brackets, as in [::1]:6379")
		}
		for i := 0; i < len(host); i++ {
			if c := host[i]; c <= ' ' || c == 0x7f || strings.IndexByte("/?#@[]%,\\", c) >= 0 {
				return "", errors.New("host is not a host name or IP address")
			}
		}
	}
	if host == "" {
		host = defaultHost
	}
	if port == "" {
		port = defaultPort
	}
	switch {
	case host == "":
		return "", errors.New("needs a host before the port")
	case port == "":
		return "", errors.New("needs a port")
	case !isPort(port):
		return "", errors.New("port is not a number from 0 to 65535")
	}
	return net.JoinHostPort(host, port), nil
}
