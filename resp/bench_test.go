package resp

import (
	"strconv"
	"strings"
	"testing"
)

const pingPayload = `{"response_channel": "jobs-0.9461501796110964", "message": "ping"}`

// Replies as redis-server sends them to a lock client.
var (
	replySimple  = "+OK\r\n"
	replyInteger = ":1\r\n"
	replyBulk    = "$64\r\n" + strings.Repeat("b", 64) + "\r\n"
	replyNumsub  = "*2\r\n$4\r\njobs\r\n:1\r\n"
	replyPush    = ">3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$" + strconv.Itoa(len(pingPayload)) + "\r\n" + pingPayload + "\r\n"
	replyRESP2   = "*3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$" + strconv.Itoa(len(pingPayload)) + "\r\n" + pingPayload + "\r\n"
)

// looping returns a Reader over reply repeated forever.
func looping(reply string) *Reader {
	return NewReader(&loopReader{loop: reply, limit: -1}, Limits{})
}

func benchmarkRead(b *testing.B, reply string) {
	r := looping(reply)
	b.SetBytes(int64(len(reply)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Read(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadSimple(b *testing.B)       { benchmarkRead(b, replySimple) }
func BenchmarkReadInteger(b *testing.B)      { benchmarkRead(b, replyInteger) }
func BenchmarkReadBulk(b *testing.B)         { benchmarkRead(b, replyBulk) }
func BenchmarkReadNumsub(b *testing.B)       { benchmarkRead(b, replyNumsub) }
func BenchmarkReadPushMessage(b *testing.B)  { benchmarkRead(b, replyPush) }
func BenchmarkReadRESP2Message(b *testing.B) { benchmarkRead(b, replyRESP2) }

func BenchmarkAppendCommand(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendCommand(buf[:0], "PUBLISH", "jobs", pingPayload)
	}
	b.SetBytes(int64(len(buf)))
}

// TestZeroAllocSteadyState checks that reading the replies a lock client
// sees allocates nothing once the Reader has warmed up: a Value's payload
// points into the Reader's memory.
func TestZeroAllocSteadyState(t *testing.T) {
	replies := []struct {
		name  string
		reply string
		want  Value
	}{
		{"simple", replySimple, simple("OK")},
		{"integer", replyInteger, integer(1)},
		{"bulk", replyBulk, bulk(strings.Repeat("b", 64))},
		{"numsub", replyNumsub, array(bulk("jobs"), integer(1))},
		{"push message", replyPush, push(bulk("message"), bulk("jobs"), bulk(pingPayload))},
		{"RESP2 message", replyRESP2, array(bulk("message"), bulk("jobs"), bulk(pingPayload))},
		{"pong RESP2", "*2\r\n$4\r\npong\r\n$0\r\n\r\n", array(bulk("pong"), bulk(""))},
		{"null bulk", "$-1\r\n", null()},
		{"error", "-MOVED 5258 127.0.0.1:17001\r\n", simpleErr("MOVED 5258 127.0.0.1:17001")},
		{"double", ",1795634566.0462697\r\n", double(1795634566.0462697)},
		{"map with attribute", "|1\r\n+a\r\n:1\r\n%1\r\n+k\r\n#t\r\n", pairs(simple("k"), boolean(true))},
		{"verbatim", "=14\r\ntxt:id=7 sub=1\r\n", verbatim("txt", "id=7 sub=1")},
		{"streamed", "$?\r\n;2\r\nab\r\n;0\r\n", bulk("ab")},
	}
	for _, tt := range replies {
		t.Run(tt.name, func(t *testing.T) {
			r := looping(tt.reply)
			for range 3 { // warm up: the reader's buffers reach their size
				if v, err := r.Read(); err != nil || !v.Equal(tt.want) {
					t.Fatalf("Read = %v, %v, want %v", v, err, tt.want)
				}
			}
			var v Value
			var err error
			if n := testing.AllocsPerRun(1000, func() { v, err = r.Read() }); n != 0 {
				t.Errorf("Read allocates %v times per reply, want 0", n)
			}
			if err != nil || !v.Equal(tt.want) {
				t.Fatalf("last Read = %v, %v", v, err)
			}
		})
	}
}
