"""Carries out one run (a workload against a target) and returns its measurements."""

import glob
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import time

from . import procs
from .procs import HarnessError
from .targets import DATABASE, USER, client_env


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def read_pgbench_logs(prefix, keep=False):
    """Latencies (µs) and failed count from pgbench --log files; removes the files unless
    `keep` (bench/run --keep, for looking at a run's latencies per client afterwards)."""
    latencies = []
    failed = 0
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                t = parts[2]
                if t.isdigit():
                    latencies.append(int(t))
                elif t in ("failed", "serialization", "deadlock"):
                    failed += 1
        if not keep:
            os.remove(path)
    latencies.sort()
    return latencies, failed


def fresh_log_prefix(run_dir, name):
    """A pgbench --log-prefix in run_dir that no kept log file uses yet: a repeated attempt of
    the same run (bench/run --keep) must not read the logs an earlier attempt left."""
    prefix = os.path.join(run_dir, name)
    attempt = 1
    while glob.glob(glob.escape(prefix) + ".*"):
        attempt += 1
        prefix = os.path.join(run_dir, f"{name}-try{attempt}")
    return prefix


def parse_pgbench_output(text):
    out = {}
    patterns = {
        "tps": r"^tps = ([0-9.]+)",
        "txns": r"^number of transactions actually processed: (\d+)",
        "failed": r"^number of failed transactions: (\d+)",
        "lat_avg_ms": r"^latency average = ([0-9.]+) ms",
        "conn_ms": r"^initial connection time = ([0-9.]+) ms",
    }
    for key, pattern in patterns.items():
        m = re.search(pattern, text, re.M)
        if m:
            out[key] = float(m.group(1))
    out["aborted"] = len(re.findall(r"^pgbench: error: client \d+ aborted", text, re.M)) + \
        len(re.findall(r"^client \d+ aborted", text, re.M))
    return out


def pgbench_argv(ctx, workload, target, duration, log_prefix=None):
    argv = [ctx.pgbench, "-n", "-h", "127.0.0.1", "-p", str(target.port), "-U", USER,
            "-c", str(workload.clients), "-j", str(min(workload.threads, workload.clients)),
            "-T", str(max(1, int(round(duration))))]
    argv += list(workload.pgbench_args)
    if log_prefix:
        argv += ["--log", f"--log-prefix={log_prefix}"]
        if ctx.sampling_rate < 1.0:
            argv += [f"--sampling-rate={ctx.sampling_rate}"]
    argv.append(DATABASE)
    return argv


class Attach:
    """Optional profilers attached to the pooler for the measured part of a run."""

    def __init__(self, ctx, workload, target, rep):
        self.ctx = ctx
        self.procs = []
        self.files = []
        self.active = (ctx.profile and target.is_pooler and target.pid
                       and workload.kind == "pgbench")
        self.tag = f"{workload.name}-{target.name}-{rep}"
        self.pid = target.pid

    def __enter__(self):
        if not self.active:
            return self
        os.makedirs(self.ctx.profile_dir, exist_ok=True)
        # perf: CPU samples with DWARF call graphs (the binaries keep no frame pointers);
        # perf-syscalls: where epoll_ctl, futex and failed (EAGAIN) recvfrom calls come from.
        perf_kinds = {
            "perf": ["-F", "499", "--call-graph", "dwarf,16384"],
            "perf-syscalls": ["-e", "syscalls:sys_enter_epoll_ctl", "-e",
                              "syscalls:sys_exit_recvfrom", "--filter", "ret < 0",
                              "-e", "syscalls:sys_enter_futex", "--call-graph", "dwarf,8192"],
        }
        for kind, extra in perf_kinds.items():
            if kind not in self.ctx.profile:
                continue
            data = os.path.join(self.ctx.profile_dir, f"{kind}-{self.tag}.data")
            self.procs.append(procs.popen(
                ["perf", "record", *extra, "-o", data, "-p", str(self.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.files.append(data)
        if "strace" in self.ctx.profile:
            out = os.path.join(self.ctx.profile_dir, f"strace-{self.tag}.txt")
            self.procs.append(procs.popen(
                ["strace", "-c", "-f", "-o", out, "-p", str(self.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.files.append(out)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            procs.stop(p, sig=signal.SIGINT, timeout=60)
        return False


def run_pgbench(ctx, workload, target, rep):
    """Fresh pooler, warm-up, then the measured pgbench run."""
    row = {}
    if workload.before:
        workload.before(ctx)
    target.start()
    try:
        if ctx.warmup > 0:
            procs.run(pgbench_argv(ctx, workload, target, ctx.warmup), env=client_env(),
                      timeout=ctx.duration * 5 + 300, check=False)
        run_dir = os.path.join(ctx.workdir, "runs")
        os.makedirs(run_dir, exist_ok=True)
        prefix = fresh_log_prefix(run_dir, f"{workload.name}-{target.name}-{rep}")
        if ctx.quiet_wait > 0:
            row["quiet_wait_s"] = procs.wait_until_quiet(ctx.quiet_wait, log=ctx.log)
        cpu0 = procs.cpu_seconds(target.pid) if target.pid else None
        pg0 = procs.tree_cpu_seconds(ctx.pg.proc.pid)
        self0 = sum(os.times()[:2])
        sys0 = procs.system_cpu_ticks()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        with Attach(ctx, workload, target, rep):
            status, out = procs.run_status(
                pgbench_argv(ctx, workload, target, ctx.duration, prefix), env=client_env(),
                timeout=ctx.duration * 5 + 300, check=False)
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sys1 = procs.system_cpu_ticks()
        self1 = sum(os.times()[:2])
        pg1 = procs.tree_cpu_seconds(ctx.pg.proc.pid)
        if target.pid:
            if target.proc.poll() is not None:
                raise HarnessError(f"{target.label} died during the run")
            row["pooler_cpu_s"] = procs.cpu_seconds(target.pid) - cpu0
            mem = procs.memory_kb(target.pid)
            row["pooler_rss_peak_kb"] = mem.get("VmHWM")
            row["pooler_rss_end_kb"] = mem.get("VmRSS")
    finally:
        code = target.stop()
    parsed = parse_pgbench_output(out)
    latencies, log_failed = read_pgbench_logs(prefix, keep=ctx.keep)
    row.update({k: parsed.get(k) for k in ("tps", "lat_avg_ms", "conn_ms")})
    txns = int(parsed.get("txns") or 0)
    row["txns"] = txns
    row["failed"] = max(int(parsed.get("failed") or 0), log_failed)
    row["aborted"] = parsed["aborted"]
    row["wall_s"] = wall
    if latencies:
        row["lat_p50_ms"] = percentile(latencies, 50) / 1000.0
        row["lat_p99_ms"] = percentile(latencies, 99) / 1000.0
        row["lat_max_ms"] = latencies[-1] / 1000.0
    if txns and "pooler_cpu_s" in row:
        row["cpu_us_per_txn"] = row["pooler_cpu_s"] / txns * 1e6
    if txns:
        client_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        row["client_cpu_us_per_txn"] = client_cpu / txns * 1e6
    busy = sys1[0] - sys0[0]
    total = sys1[1] - sys0[1]
    row["system_busy_pct"] = 100.0 * busy / total if total else None
    if txns:
        row["postgres_cpu_us_per_txn"] = (pg1 - pg0) / txns * 1e6
    if total:
        # CPU used by anything but PostgreSQL, the pooler, pgbench and this harness: other
        # people's work on a shared machine (plus kernel threads such as softirq handlers).
        ours = (pg1 - pg0) + row.get("pooler_cpu_s", 0.0) + (self1 - self0) + (
            (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime))
        row["foreign_cpu_pct"] = max(0.0, 100.0 * (busy / procs.CLK_TCK - ours) /
                                     (total / procs.CLK_TCK))
    errors = []
    if "tps" not in parsed:
        last = out.strip().splitlines()[-1:] or ["no output"]
        errors.append(f"pgbench reported no tps (exit status {status}; last line: "
                      f"{last[0][:150]})")
    if row["aborted"]:
        errors.append(f"{row['aborted']} clients aborted")
    first_err = next((l for l in out.splitlines() if "error" in l.lower()), "")
    if first_err:
        errors.append(first_err.strip()[:200])
    if code not in target.clean_exit_codes and target.is_pooler:
        errors.append(f"{target.label} exited with status {code}")
    row["error"] = "; ".join(errors)
    return row


def run_idle(ctx, workload, target, rep):
    """Fresh pooler, one warm-up transaction, then N idle clients; RSS before and after."""
    del rep
    clients = ctx.idle_clients or workload.clients
    row = {"clients": clients}
    target.start()
    try:
        procs.run([ctx.pgbench, "-n", "-S", "-h", "127.0.0.1", "-p", str(target.port), "-U", USER,
                   "-c", "1", "-t", "10", DATABASE], env=client_env(), timeout=120)
        if ctx.quiet_wait > 0:
            row["quiet_wait_s"] = procs.wait_until_quiet(ctx.quiet_wait, log=ctx.log)
        else:
            time.sleep(1.0)
        before = procs.memory_kb(target.pid)["VmRSS"]
        cpu0 = procs.cpu_seconds(target.pid)
        sys0 = procs.system_cpu_ticks()
        pg0 = procs.tree_cpu_seconds(ctx.pg.proc.pid)
        self0 = sum(os.times()[:2])
        argv = [ctx.idle_tool, "--port", str(target.port), "--user", USER, "--password", "bench",
                "--database", DATABASE, "--clients", str(clients),
                "--concurrency", str(ctx.idle_concurrency), "--timeout", "120"]
        tool = procs.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        try:
            ready = _read_tagged_line(tool, "READY", timeout=180)
            cpu1 = procs.cpu_seconds(target.pid)
            sys1 = procs.system_cpu_ticks()
            pg1 = procs.tree_cpu_seconds(ctx.pg.proc.pid)
            self1 = sum(os.times()[:2])
            tool_cpu = _process_cpu(tool.pid)
            time.sleep(ctx.idle_settle)
            mem = procs.memory_kb(target.pid)
            tool.stdin.close()
            done = _read_tagged_line(tool, "DONE", timeout=60)
            tool.wait(timeout=60)
        finally:
            procs.stop(tool, sig=signal.SIGKILL)
    finally:
        code = target.stop()
    row.update({
        "idle_rss_before_kb": before,
        "idle_rss_after_kb": mem["VmRSS"],
        "pooler_rss_peak_kb": mem["VmHWM"],
        "pooler_rss_end_kb": mem["VmRSS"],
        "idle_connect_s": ready["connect_s"],
        "idle_connects_per_s": ready["connects_per_s"],
        "idle_handshake_p50_ms": ready["handshake_p50_ms"],
        "idle_handshake_p99_ms": ready["handshake_p99_ms"],
        "failed": ready["failed"] + done["dropped"],
        "pooler_cpu_s": cpu1 - cpu0,
    })
    total = (sys1[1] - sys0[1]) / procs.CLK_TCK
    if total > 0:
        ours = (cpu1 - cpu0) + (pg1 - pg0) + (self1 - self0) + tool_cpu
        row["foreign_cpu_pct"] = max(0.0, 100.0 * ((sys1[0] - sys0[0]) / procs.CLK_TCK - ours)
                                     / total)
        row["system_busy_pct"] = 100.0 * (sys1[0] - sys0[0]) / procs.CLK_TCK / total
    if ready["ready"]:
        row["idle_bytes_per_client"] = (mem["VmRSS"] - before) * 1024.0 / ready["ready"]
        row["idle_cpu_us_per_connect"] = (cpu1 - cpu0) / ready["ready"] * 1e6
        # The tool is one thread: near 1 s per s, it, not the pooler, sets the login time.
        row["idle_tool_cpu_us_per_connect"] = tool_cpu / ready["ready"] * 1e6
    errors = []
    if ready["failed"]:
        errors.append(f"{ready['failed']} logins failed: {ready['first_error']}")
    if done["dropped"]:
        errors.append(f"{done['dropped']} idle connections dropped")
    if code not in target.clean_exit_codes:
        errors.append(f"{target.label} exited with status {code}")
    row["error"] = "; ".join(errors)
    return row


def _process_cpu(pid):
    try:
        return procs.cpu_seconds(pid)
    except OSError:
        return 0.0


def _read_tagged_line(proc, tag, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 1.0)
        if r:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
        elif proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.poll() is not None else ""
    raise HarnessError(f"sy_idle_clients gave no {tag} line: {err.strip()[:500]}")


def have(tool):
    return shutil.which(tool) is not None
