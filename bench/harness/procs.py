"""Process plumbing for the harness: starting children (as postgres when root), killing them on
exit, free ports, and reading CPU time and memory from /proc."""

import os
import pwd
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

_children = []  # every Popen we started and have not reaped, killed by kill_all()


class HarnessError(Exception):
    """A step of the benchmark could not be carried out."""


def is_root():
    return os.geteuid() == 0


def postgres_ids():
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def chown_for_postgres(path):
    """Gives `path` to the postgres user when we are root (PostgreSQL refuses to run as root)."""
    if is_root():
        uid, gid = postgres_ids()
        os.chown(path, uid, gid)


def popen(argv, *, as_postgres=False, stdout=None, stderr=None, stdin=subprocess.DEVNULL,
          env=None, text=False):
    """Starts a child in its own session (so a terminal's Ctrl-C reaches only the harness, which
    then stops it) and remembers it for kill_all()."""
    kwargs = {}
    if as_postgres and is_root():
        uid, gid = postgres_ids()
        kwargs.update(user=uid, group=gid, extra_groups=[])
    p = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env,
                         start_new_session=True, text=text, **kwargs)
    _children.append(p)
    return p


def run(argv, *, as_postgres=False, env=None, timeout=600, check=True):
    """Runs a command to completion and returns its combined output."""
    return run_status(argv, as_postgres=as_postgres, env=env, timeout=timeout, check=check)[1]


def run_status(argv, *, as_postgres=False, env=None, timeout=600, check=True):
    """Runs a command to completion; returns (exit status, combined output)."""
    p = popen(argv, as_postgres=as_postgres, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
              env=env, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p, sig=signal.SIGKILL)
        raise HarnessError(f"{argv[0]} timed out after {timeout}s")
    forget(p)
    if check and p.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} failed ({p.returncode}):\n{out}")
    return p.returncode, out


def forget(p):
    if p in _children:
        _children.remove(p)


def _signal_group(p, sig):
    """Signals the child's whole session (popen starts each in its own), so that what a wrapper
    such as strace or valgrind started does not outlive it."""
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(p, sig=signal.SIGTERM, timeout=15):
    """Signals one child we started and waits for it; SIGKILL to its whole process group if it
    does not exit in time, and to whatever it left behind in that group once it has."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.wait(timeout=10)
        except ProcessLookupError:
            pass
    _signal_group(p, signal.SIGKILL)
    forget(p)
    return p.returncode


def kill_all():
    """Stops every child still running, newest first (poolers before PostgreSQL)."""
    for p in reversed(list(_children)):
        try:
            stop(p, sig=signal.SIGTERM, timeout=10)
        except Exception:  # pylint: disable=broad-except
            pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=20, what="server"):
    """Waits until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"{what} exited with status {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise HarnessError(f"{what} did not accept connections on port {port} in {timeout}s")


def raise_file_limit(want=65536):
    """Lifts the open-file limit (children inherit it): 10,000 idle clients need ~20,000 fds."""
    import resource  # pylint: disable=import-outside-toplevel
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want and is_root():
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass
    target = min(max(soft, want), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kb(pid):
    """{'VmRSS': kB, 'VmHWM': kB} of a process."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def system_cpu_ticks():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        parts = f.readline().split()[1:]
    values = [int(v) for v in parts[:8]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


def tree_cpu_seconds(root_pid):
    """CPU time of a process, its live descendants, and its reaped children (cutime/cstime):
    PostgreSQL's postmaster and every backend it has forked."""
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append((int(entry), fields))
    total = 0
    stack = [root_pid]
    seen = set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for child, _ in kids.get(pid, []):
            stack.append(child)
    for entries in kids.values():
        for pid, fields in entries:
            if pid in seen:
                total += int(fields[11]) + int(fields[12])
                if pid == root_pid:
                    total += int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def wait_until_quiet(max_wait, busy_pct=15.0, log=None):
    """Waits (up to max_wait seconds) for a second in which the machine is at most busy_pct busy,
    so that other people's builds on a shared box do not land in a measurement. Returns the
    seconds waited."""
    start = time.monotonic()
    warned = False
    while True:
        b0, t0 = system_cpu_ticks()
        time.sleep(1.0)
        b1, t1 = system_cpu_ticks()
        busy = 100.0 * (b1 - b0) / max(1, t1 - t0)
        waited = time.monotonic() - start
        if busy <= busy_pct or waited >= max_wait:
            return waited
        if log and not warned and waited > 5:
            log(f"  machine {busy:.0f}% busy with other work; waiting up to {max_wait:.0f}s")
            warned = True
