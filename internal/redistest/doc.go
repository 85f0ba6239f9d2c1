// Package redistest starts the servers that pubsublock's tests run against:
// real redis-server processes (a single server, a Redis Cluster, a primary
// with a replica and a sentinel), an in-process miniredis, and a TCP proxy
// that can cut the network without closing anything.
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
