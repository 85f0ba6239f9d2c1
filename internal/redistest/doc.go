// Package redistest starts the servers that pubsublock's tests run against:
// real redis-server processes (a single server, a Redis Cluster, a primary
// with a replica and a sentinel), an in-process miniredis, and a TCP proxy
// that can cut the network without closing anything, record what clients
// send and inject what they receive. [Do] and the [Server] methods are the
// tests' one-shot client, for looking at a server from outside.
//
// Every server listens on a free loopback port, keeps its files in a
// t.TempDir, and is stopped with t.Cleanup (SIGTERM, then SIGKILL), so
// tests never rely on a system Redis on 6379 and leave no process or
// goroutine behind.
//
// Tests that need an external program call [RequireBinary] or
// [RequirePython]: when the program is missing they are skipped with an
// install hint, or fail with that hint when the environment variable CI is
// "true", so a CI machine cannot pass by skipping.
//
// # Choosing the server
//
// The servers are redis-server from PATH. The environment variable
// PUBSUBLOCK_REDIS_SERVER names another program for every server that
// [Redis], [Cluster] and [Sentinel] start, the sentinel included (it runs
// as "<program> sentinel.conf --sentinel", which valkey-server understands
// too): a path, or a name looked up on PATH. PUBSUBLOCK_REDIS_CLI does the
// same for the redis-cli with which [Cluster] joins three or more masters.
// A program that one of them names must exist, or the test fails, CI or
// not. For example, with the Valkey 8.1 wrappers that .ci/trixie-servers
// makes from Debian trixie's packages (make test-servers runs the tests
// with each server it makes):
//
//	PUBSUBLOCK_REDIS_SERVER=~/.cache/pubsublock/trixie/bin/valkey-server-8.1 \
//	PUBSUBLOCK_REDIS_CLI=~/.cache/pubsublock/trixie/bin/valkey-cli-8.1 \
//	go test -race . ./internal/redistest
//
// Options reach a server through a config file in its directory, never its
// command line: servers turn arguments into config lines differently
// (Valkey 8.1 does not escape quotes), so an argument like "" or one with
// quotes would mean different things to each.
//
// The package speaks RESP itself through a tiny private client (see
// [Server.Do]) and deliberately imports neither the root package nor resp/,
// so that their tests can use it.
//
// # Concurrency
//
// The methods of [Server], [Proxy], [ClusterServers] and [SentinelSet] may
// be called from any goroutine. Methods that take a testing.TB report
// failures with t.Fatalf, so call them from the test's goroutine.
package redistest
