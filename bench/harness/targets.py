"""The PostgreSQL server the benchmark runs against, and the three ways clients reach it:
directly, through PgBouncer, and through Shardyard (each pooler started fresh per run)."""

import os
import subprocess
import time

from . import procs
from .procs import HarnessError

USER = "bench"
PASSWORD = "bench"
DATABASE = "bench"


class Postgres:
    """One PostgreSQL 15 cluster on loopback in a temporary directory (fsync off)."""

    def __init__(self, pg_bin, workdir, *, max_connections, auth, log):
        self.pg_bin = pg_bin
        self.dir = os.path.join(workdir, "pg")
        self.data = os.path.join(self.dir, "data")
        self.max_connections = max_connections
        self.auth = auth  # hba method for the bench user: md5, scram-sha-256 or trust
        self.log = log
        self.port = None
        self.proc = None

    def bin(self, name):
        return os.path.join(self.pg_bin, name)

    def start(self):
        os.makedirs(self.dir)
        procs.chown_for_postgres(self.dir)
        procs.run([self.bin("initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"], as_postgres=True)
        method = self.auth if self.auth != "trust" else "trust"
        with open(os.path.join(self.data, "pg_hba.conf"), "w", encoding="ascii") as f:
            f.write("host all postgres 127.0.0.1/32 trust\n"
                    f"host all all 127.0.0.1/32 {method}\n")
        encryption = "scram-sha-256" if self.auth == "scram-sha-256" else "md5"
        self.port = procs.free_port()
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "unix_socket_directories": "''",
            "max_connections": self.max_connections,
            "shared_buffers": "'512MB'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_wal_size": "'8GB'",
            "checkpoint_timeout": "'1h'",
            "autovacuum": "off",
            "password_encryption": f"'{encryption}'",
            "log_min_messages": "warning",
            "logging_collector": "off",
        }
        with open(os.path.join(self.data, "postgresql.auto.conf"), "w", encoding="ascii") as f:
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")
        # pylint: disable-next=consider-using-with
        logfile = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = procs.popen([self.bin("postgres"), "-D", self.data], as_postgres=True,
                                stdout=logfile, stderr=subprocess.STDOUT)
        procs.wait_for_port(self.port, self.proc, timeout=60, what="PostgreSQL")
        # The port accepts before recovery finishes; wait until queries work.
        deadline = time.monotonic() + 60
        while True:
            try:
                self.admin("SELECT 1")
                break
            except HarnessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def admin(self, sql, database="postgres"):
        """Runs SQL as the postgres superuser (trust over TCP) and returns psql's output."""
        return procs.run([self.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          "-d", database, "-c", sql], timeout=3600)

    def create_bench_database(self, scale):
        self.admin(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        self.admin(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        self.log(f"initialising pgbench data, scale {scale}")
        t0 = time.monotonic()
        procs.run([self.bin("pgbench"), "-i", "-q", "-s", str(scale), "-h", "127.0.0.1",
                   "-p", str(self.port), "-U", USER, DATABASE], env=client_env(), timeout=3600)
        self.admin("VACUUM ANALYZE", database=DATABASE)
        self.admin("CHECKPOINT")
        self.log(f"pgbench data ready in {time.monotonic() - t0:.1f}s")

    def version(self):
        return procs.run([self.bin("postgres"), "--version"]).strip()

    def stop(self):
        if self.proc is not None:
            procs.stop(self.proc, timeout=30)  # SIGTERM = smart shutdown
            self.proc = None


def client_env():
    env = dict(os.environ)
    env["PGPASSWORD"] = PASSWORD
    env.pop("PGSERVICE", None)
    env.pop("PGSSLMODE", None)
    env["PGSSLMODE"] = "disable"
    return env


class Target:
    """Where clients connect. `pid` is the pooler's process (None for direct)."""

    name = "?"
    label = "?"
    is_pooler = True
    # Exit statuses that mean a normal stop after SIGTERM.
    clean_exit_codes = (0, None, -15)

    def __init__(self, ctx):
        self.ctx = ctx
        self.port = None
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def start(self):
        """Starts a fresh pooler process (or nothing, for direct)."""

    def stop(self):
        if self.proc is not None:
            code = procs.stop(self.proc)
            self.proc = None
            return code
        return 0

    def version(self):
        return ""


class Direct(Target):
    name = "direct"
    label = "direct PostgreSQL"
    is_pooler = False

    def start(self):
        self.port = self.ctx.pg.port


class PgBouncer(Target):
    name = "pgbouncer"
    label = "PgBouncer"
    clean_exit_codes = (0, 1, None, -15)  # PgBouncer's SIGTERM "fast exit" returns 1

    def start(self):
        ctx = self.ctx
        d = os.path.join(ctx.workdir, "pgbouncer")
        os.makedirs(d, exist_ok=True)
        procs.chown_for_postgres(d)
        self.port = procs.free_port()
        users = os.path.join(d, "userlist.txt")
        with open(users, "w", encoding="ascii") as f:
            f.write(f'"{USER}" "{PASSWORD}"\n')
        auth_type = {"md5": "md5", "scram-sha-256": "scram-sha-256", "trust": "trust"}[ctx.auth]
        conf = os.path.join(d, "pgbouncer.ini")
        with open(conf, "w", encoding="ascii") as f:
            f.write(f"""[databases]
{DATABASE} = host=127.0.0.1 port={ctx.pg.port} dbname={DATABASE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
listen_backlog = 4096
unix_socket_dir =
auth_type = {auth_type}
auth_file = {users}
pool_mode = transaction
default_pool_size = {ctx.pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {ctx.max_clients}
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 3600
logfile = {os.path.join(d, 'pgbouncer.log')}
""")
        for path in (users, conf):
            procs.chown_for_postgres(path)
        self.proc = procs.popen([ctx.pgbouncer, "-q", conf], as_postgres=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.wait_for_port(self.port, self.proc, what="PgBouncer")

    def version(self):
        return procs.run([self.ctx.pgbouncer, "--version"]).splitlines()[0].strip()


class Shardyard(Target):
    name = "shardyard"
    label = "Shardyard"

    def start(self):
        ctx = self.ctx
        d = os.path.join(ctx.workdir, "shardyard")
        os.makedirs(d, exist_ok=True)
        self.port = procs.free_port()
        conf = os.path.join(d, "shardyard.yaml")
        with open(conf, "w", encoding="ascii") as f:
            f.write(f"""# Written by bench/run.
listen: {{host: 127.0.0.1, port: {self.port}}}
workers: {ctx.shardyard_workers}
log_level: warning
auth_type: {ctx.auth}
pool:
  mode: transaction
  size: {ctx.pool_size}
  max_client_connections: {ctx.max_clients}
users:
  - {{name: {USER}, password: {PASSWORD}}}
databases:
  - name: {DATABASE}
    shards:
      - primary: {{host: 127.0.0.1, port: {ctx.pg.port}}}
""")
        # pylint: disable-next=consider-using-with
        self.log = open(os.path.join(d, "shardyard.log"), "ab")
        argv = list(ctx.shardyard_wrapper) + [ctx.shardyard, "--config", conf]
        self.proc = procs.popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        procs.wait_for_port(self.port, self.proc, timeout=60, what="Shardyard")

    def log_tail(self, lines=20):
        path = os.path.join(self.ctx.workdir, "shardyard", "shardyard.log")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def version(self):
        return procs.run([self.ctx.shardyard, "--version"]).strip()


TARGETS = {cls.name: cls for cls in (Direct, PgBouncer, Shardyard)}
