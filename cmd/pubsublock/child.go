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
// REDISCLI_AUTH included. An inherited PUBSUBLOCK_TOKEN is removed without fencing, so
// a nested run never sees its parent's token as its own.
func command(path string, o *options, token int64) *exec.Cmd {
	cmd := exec.Command(path, o.command[1:]...)
	cmd.Args[0] = o.command[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = procAttr()
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

// exitStatus is COMMAND's status as sh reports it: its exit code, or 128+N
// when signal N killed it.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignal + int(ws.Signal())
	}
	return ps.ExitCode()
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
