"""What bench/run measures: the workloads, and the goals from issue 3 that the report checks.

To add a workload (prepared statements, read/write split, sharding, ...), append a Workload to
WORKLOADS and, if it has goals, Goals to GOALS; `bench/run --workloads NAME` then runs it alone.
A workload is either "pgbench" (any pgbench arguments, including -f SCRIPT files kept under
bench/) or "idle" (sy_idle_clients holding connections open). `before` runs before every run,
with the harness context, against PostgreSQL directly.
"""

import dataclasses
import os
from typing import Callable, Optional, Sequence

ALL_TARGETS = ("direct", "pgbouncer", "shardyard")
POOLERS = ("pgbouncer", "shardyard")


@dataclasses.dataclass
class Workload:
    name: str
    title: str
    kind: str = "pgbench"  # "pgbench" or "idle"
    pgbench_args: Sequence[str] = ()
    clients: int = 50
    threads: int = 2
    targets: Sequence[str] = ALL_TARGETS
    before: Optional[Callable] = None
    in_quick: bool = True
    in_smoke: bool = False

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


def script(name):
    return os.path.join(SCRIPTS, name)


def reset_tpcb(ctx):
    """What pgbench itself does before a tpcb-like run (we pass -n so that poolers see only the
    workload): empty the history table and vacuum the small hot tables."""
    ctx.pg.admin("TRUNCATE pgbench_history", database="bench")
    ctx.pg.admin("VACUUM pgbench_branches, pgbench_tellers", database="bench")


WORKLOADS = [
    Workload("select-simple-50", "pgbench -S (simple protocol), 50 clients, pool of 20",
             pgbench_args=["-S", "-M", "simple"], clients=50, in_smoke=True),
    Workload("select-extended-50", "pgbench -S -M extended, 50 clients, pool of 20",
             pgbench_args=["-S", "-M", "extended"], clients=50),
    Workload("tpcb-50", "pgbench tpcb-like (default script), 50 clients, pool of 20",
             pgbench_args=["-M", "simple"], clients=50, before=reset_tpcb),
    Workload("select-connect-50", "pgbench -S -C (new connection per transaction), 50 clients",
             pgbench_args=["-S", "-C", "-M", "simple"], clients=50),
    Workload("select-simple-1000", "pgbench -S (simple protocol), 1,000 clients, pool of 20",
             pgbench_args=["-S", "-M", "simple"], clients=1000),
    Workload("select-extended-1000", "pgbench -S -M extended, 1,000 clients, pool of 20",
             pgbench_args=["-S", "-M", "extended"], clients=1000),
    # Session settings in transaction mode: a reported one travels in ParameterStatus messages; an
    # unreported one costs Shardyard a read-back after the SET (PgBouncer 1.18 does not track it:
    # the next client of that server connection would run with it).
    Workload("tagged-select-50", "SET application_name, then pgbench -S's SELECT, 50 clients, "
             "pool of 20", pgbench_args=["-f", script("tagged-select.sql"), "-M", "simple"],
             clients=50),
    Workload("tenant-select-50", "SET search_path, then pgbench -S's SELECT, 50 clients, pool of "
             "20", pgbench_args=["-f", script("tenant-select.sql"), "-M", "simple"], clients=50),
    Workload("idle-10000", "10,000 idle client connections (sy_idle_clients), md5 login",
             kind="idle", clients=10000, targets=POOLERS, in_smoke=True),
]


@dataclasses.dataclass
class Goal:
    """A target from an issue: Shardyard's median `metric` on `workload`, either divided by the
    `versus` target's median (a ratio) or as is (versus=None), compared with `bound`."""
    workload: str
    metric: str
    versus: Optional[str]
    op: str  # ">=" or "<="
    bound: float
    text: str

    def check(self, value):
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def shown(self, value, name_versus=True):
        """`value` as the report prints it: a ratio with two decimals, or as many more (up to
        four more) as it takes for the printed figure to agree with the verdict, so that a ratio of
        1.0986 against a bound of 1.1 reads "1.099×", not "1.10×" next to "missed"."""
        if not self.versus:
            return f"{value:,.0f}"
        for digits in range(2, 7):
            text = f"{value:.{digits}f}"
            if self.check(float(text)) == self.check(value):
                break
        return f"{text}× {self.versus}" if name_versus else f"{text}×"


GOALS = [
    Goal("select-simple-50", "tps", "pgbouncer", ">=", 1.1, "TPS ≥ 1.1× PgBouncer"),
    Goal("select-extended-50", "tps", "pgbouncer", ">=", 1.1, "TPS ≥ 1.1× PgBouncer"),
    Goal("select-simple-1000", "tps", "pgbouncer", ">=", 1.1, "TPS ≥ 1.1× PgBouncer"),
    Goal("select-extended-1000", "tps", "pgbouncer", ">=", 1.1, "TPS ≥ 1.1× PgBouncer"),
    Goal("select-simple-50", "tps", "direct", ">=", 0.95, "TPS ≥ 0.95× direct"),
    Goal("select-extended-50", "tps", "direct", ">=", 0.95, "TPS ≥ 0.95× direct"),
    Goal("select-simple-50", "cpu_us_per_txn", "pgbouncer", "<=", 0.8,
         "pooler CPU/txn ≤ 0.8× PgBouncer"),
    Goal("select-extended-50", "cpu_us_per_txn", "pgbouncer", "<=", 0.8,
         "pooler CPU/txn ≤ 0.8× PgBouncer"),
    Goal("select-simple-1000", "cpu_us_per_txn", "pgbouncer", "<=", 0.8,
         "pooler CPU/txn ≤ 0.8× PgBouncer"),
    Goal("select-extended-1000", "cpu_us_per_txn", "pgbouncer", "<=", 0.8,
         "pooler CPU/txn ≤ 0.8× PgBouncer"),
    Goal("select-simple-1000", "lat_p99_ms", "pgbouncer", "<=", 1.0, "p99 ≤ PgBouncer's"),
    Goal("select-extended-1000", "lat_p99_ms", "pgbouncer", "<=", 1.0, "p99 ≤ PgBouncer's"),
    Goal("select-connect-50", "tps", "pgbouncer", ">=", 1.0, "TPS ≥ PgBouncer's"),
    Goal("select-connect-50", "tps", "direct", ">=", 2.0, "TPS far above direct (≥ 2×)"),
    Goal("idle-10000", "idle_bytes_per_client", None, "<=", 1024, "≤ 1 KB RSS per idle client"),
    Goal("idle-10000", "idle_connect_s", "pgbouncer", "<=", 1.0,
         "connect 10,000 at least as fast as PgBouncer"),
]
