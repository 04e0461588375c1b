"""What a running process holds, read from /proc: open file descriptors, resident memory and CPU
time. Used to check that connections leave nothing behind and that an idle-but-saturated proxy
does not spin."""

import os
import time

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_targets(pid):
    """{fd: link target} (socket:[inode], pipe:[...], paths) for a diff when counts differ."""
    out = {}
    base = "/proc/%d/fd" % pid
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink(os.path.join(base, name))
        except OSError:
            pass
    return out


def tcp_sockets(pid):
    """{inode: (local_port, remote_port, state_hex)} of the TCP sockets in pid's network
    namespace, from /proc/PID/net/tcp and tcp6."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
                    out[inode] = (int(local.rsplit(":", 1)[1], 16),
                                  int(remote.rsplit(":", 1)[1], 16), state)
        except FileNotFoundError:
            pass
    return out


def fds_without_port(pid, port):
    """The fds of pid, less the connected TCP sockets whose local port is `port` (e.g. admin
    HTTP connections a test itself makes while it measures)."""
    socks = tcp_sockets(pid)
    count = 0
    for target in fd_targets(pid).values():
        if target.startswith("socket:["):
            info = socks.get(int(target[8:-1]))
            if info and info[0] == port and info[2] != "0A":  # 0A: LISTEN
                continue
        count += 1
    return count


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def cpu_seconds(pid):
    """User + system CPU time the process has used."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLK_TCK


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate() until it returns a true value or timeout passes; returns the last
    value. For state that has no notification of its own (a process's fd table)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
