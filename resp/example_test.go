package resp_test

import (
	"fmt"
	"strings"

	"github.com/pubsublock/pubsublock/resp"
)

func ExampleReader() {
	wire := ">3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$4\r\nping\r\n" +
		"*2\r\n$4\r\njobs\r\n:1\r\n" +
		"-MOVED 5258 127.0.0.1:17001\r\n"
	r := resp.NewReader(strings.NewReader(wire), resp.Limits{})
	for {
		v, err := r.Read()
		if err != nil {
			fmt.Println(err) // io.EOF between replies
			return
		}
		if err := v.Err(); err != nil {
			fmt.Println("server error, code", err.(resp.Error).Code())
			continue
		}
		fmt.Println(v.Type, v)
	}
	// Output:
	// push >["message" "jobs" "ping"]
	// array ["jobs" 1]
	// server error, code MOVED
	// EOF
}

func ExampleAppendCommand() {
	buf := make([]byte, 0, 64)
	buf = resp.AppendCommand(buf, "PUBSUB", "NUMSUB", "jobs")
	fmt.Printf("%q\n", buf)
	// Output:
	// "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$4\r\njobs\r\n"
}
