//go:build unix

package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// lookCommand finds COMMAND before the lock is taken, so a typo costs no
// lock.
func lookCommand(name string) (string, error) {
	return exec.LookPath(name)
}

// startStatus maps an error finding or starting COMMAND to an exit status,
// as sh does: 127 not found, 126 found but not executable.
func startStatus(err error) int {
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return exitNotFound
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.ENOEXEC),
		errors.Is(err, syscall.EISDIR):
		return exitNotExec
	}
	return exitSoftware
}

// command prepares COMMAND: standard streams inherited, its own process
// group, and PUBSUBLOCK_CHANNEL and (with fencing) PUBSUBLOCK_TOKEN in its
// environment, which is otherwise pubsublock's own, REDIS_URL and
// REDISCLI_AUTH included. An inherited PUBSUBLOCK_TOKEN is removed without
// fencing, so a nested run never sees its parent's token as its own. With
// a terminal, COMMAND's group is placed in its foreground as it starts.
func command(path string, o *options, token int64, foreground *terminal) *exec.Cmd {
	cmd := exec.Command(path, o.command[1:]...)
	cmd.Args[0] = o.command[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = procAttr()
	if foreground != nil {
		// The child sets it, with its signals still blocked, before it
		// runs COMMAND: COMMAND's first read of the terminal finds it
		// in the foreground.
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = foreground.fd
	}
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if !hasKey(kv, "PUBSUBLOCK_CHANNEL") && !hasKey(kv, "PUBSUBLOCK_TOKEN") {
			env = append(env, kv)
		}
	}
	env = append(env, "PUBSUBLOCK_CHANNEL="+o.channel)
	if o.fencing {
		env = append(env, "PUBSUBLOCK_TOKEN="+strconv.FormatInt(token, 10))
	}
	cmd.Env = env
	return cmd
}

func hasKey(kv, key string) bool {
	return len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key
}

// watchChild sends each change of process pid's state (stopped,
// continued) and then its end, and reaps it: it stands in for cmd.Wait,
// which sees no stops. The channel is closed after the end, or when pid
// cannot be waited for.
func watchChild(pid int) <-chan syscall.WaitStatus {
	ch := make(chan syscall.WaitStatus, 4)
	go func() {
		defer close(ch)
		for {
			var ws syscall.WaitStatus
			_, err := syscall.Wait4(pid, &ws, syscall.WUNTRACED|syscall.WCONTINUED, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				return
			}
			ch <- ws
			if ws.Exited() || ws.Signaled() {
				return
			}
		}
	}()
	return ch
}

// exitStatus is COMMAND's status as sh reports it: its exit code, or 128+N
// when signal N killed it.
func exitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return exitSignal + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// sigName returns the name of a signal, "SIGTSTP" rather than Go's
// "stopped".
func sigName(sig os.Signal) string {
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return sig.String()
}

var signalNames = map[os.Signal]string{
	syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM", syscall.SIGHUP: "SIGHUP", syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2", syscall.SIGKILL: "SIGKILL", syscall.SIGCONT: "SIGCONT",
	syscall.SIGSTOP: "SIGSTOP", syscall.SIGTSTP: "SIGTSTP", syscall.SIGTTIN: "SIGTTIN", syscall.SIGTTOU: "SIGTTOU",
}

// jobStop reports whether sig is a job-control stop: the terminal's
// suspend character (SIGTSTP), or a read or write of the terminal from
// the background (SIGTTIN, SIGTTOU).
func jobStop(sig syscall.Signal) bool {
	return sig == syscall.SIGTSTP || sig == syscall.SIGTTIN || sig == syscall.SIGTTOU
}

// clearGroup ends what is left of COMMAND's process group after a loss:
// SIGTERM if none was sent yet, then SIGKILL once killAfter has passed
// since SIGTERM, unless the group has emptied by then. COMMAND itself has
// been reaped, so its group id stays reserved only while members remain.
func clearGroup(pgid int, termAt time.Time, killAfter time.Duration, rep *reporter) {
	if termAt.IsZero() {
		if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
			return // no member left
		}
		termAt = time.Now()
	}
	for time.Since(termAt) < killAfter {
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if syscall.Kill(-pgid, syscall.SIGKILL) == nil {
		rep.event("SIGKILL to what is left of the process group", "pgid", pgid)
	}
}
