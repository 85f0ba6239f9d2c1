package redistest

import (
	"bufio"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseNodes(t *testing.T) {
	text := "" +
		"07c3 127.0.0.1:30004@31004 master - 0 1426238317239 4 connected\n" +
		"67ed 127.0.0.1:30002@31002,host master - 0 1426238316232 2 connected 5461-10922 [5460-<-e7d1]\n" +
		"e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5459 [5460->-67ed]\n"
	view, err := parseNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	want := clusterNode{addr: "127.0.0.1:30002", flags: []string{"master"}, link: "connected", ranges: []string{"5461-10922"}, pending: true}
	if got := view.nodes["67ed"]; !reflect.DeepEqual(got, want) {
		t.Errorf("node 67ed = %+v, want %+v", got, want)
	}
	for slot, id := range map[int]string{0: "e7d1", 5459: "e7d1", 5460: "", 5461: "67ed", 10922: "67ed", 10923: ""} {
		if got := view.owner(slot); got != id {
			t.Errorf("owner(%d) = %q, want %q", slot, got, id)
		}
	}
	if _, err := parseNodes("abc 127.0.0.1:1@2 master\n"); err == nil {
		t.Error("short line parsed")
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := Cluster(t, 3)
	t.Logf("cluster of 3 up in %v", time.Since(start))
	if len(c.Addrs()) != 3 || len(c.Nodes()) != 3 {
		t.Fatalf("Addrs() = %v", c.Addrs())
	}
	for _, n := range c.Nodes() {
		info := mustDo(t, n, "CLUSTER", "INFO")
		for field, want := range map[string]string{"cluster_state": "ok", "cluster_slots_assigned": "16384", "cluster_known_nodes": "3", "cluster_size": "3"} {
			if got, _ := infoField(info, field); got != want {
				t.Errorf("%s: %s:%s, want %s", n.Addr(), field, got, want)
			}
		}
	}

	// A shard subscriber of the slot's owner learns that the slot left.
	slot, _ := strconv.Atoi(mustDo(t, c.Nodes()[0], "CLUSTER", "KEYSLOT", "jobs"))
	from := c.Owner(t, slot)
	var to *Server
	for _, n := range c.Nodes() {
		if n != from {
			to = n
			break
		}
	}
	sub, err := net.Dial("tcp", from.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	r := bufio.NewReader(sub)
	sub.SetDeadline(time.Now().Add(10 * time.Second))
	sub.Write(appendCommand(nil, "SSUBSCRIBE", "jobs"))
	if v, err := readReply(r, 0); err != nil || render(v) != "ssubscribe\njobs\n1" {
		t.Fatalf("SSUBSCRIBE = %#v, %v", v, err)
	}

	start = time.Now()
	c.MigrateSlot(t, slot, from, to)
	t.Logf("slot %d moved in %v", slot, time.Since(start))
	for _, n := range c.Nodes() {
		if got := c.Owner(t, slot); got != to {
			t.Errorf("owner of %d is %s, want %s", slot, got.Addr(), to.Addr())
		}
		_, err := n.Do("SPUBLISH", "jobs", "x")
		if n == to && err != nil {
			t.Errorf("SPUBLISH on the new owner: %v", err)
		}
		if n != to && (err == nil || !strings.HasPrefix(err.Error(), "MOVED "+strconv.Itoa(slot)+" "+to.Addr())) {
			t.Errorf("SPUBLISH on %s: %v, want MOVED to %s", n.Addr(), err, to.Addr())
		}
	}
	if v, err := readReply(r, 0); err != nil || render(v) != "sunsubscribe\njobs\n0" {
		t.Errorf("shard subscriber got %#v, %v; want sunsubscribe", v, err)
	}
}

func TestClusterSmall(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			c := Cluster(t, n)
			if _, err := c.Nodes()[0].Do("SET", "{a}", "1"); err != nil && !strings.HasPrefix(err.Error(), "MOVED") {
				t.Fatal(err)
			}
			if n == 2 {
				from, to := c.Nodes()[0], c.Nodes()[1]
				c.MigrateSlot(t, 0, from, to)
				if c.Owner(t, 0) != to {
					t.Errorf("slot 0 did not move")
				}
			}
		})
	}
}
