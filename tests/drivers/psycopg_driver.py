#!/usr/bin/python3
"""psycopg 3 scenarios run through Shardyard by drivers_test (psycopg_test.cc): one per argv[1]."""

import asyncio
import datetime
import decimal
import faulthandler
import hashlib
import os
import sys
import threading
import time
import uuid
from zoneinfo import ZoneInfo

import psycopg
from psycopg import errors, pq
from psycopg.types.json import Json, Jsonb

# A hang shows where it is stuck instead of waiting for ctest's timeout.
faulthandler.dump_traceback_later(90, exit=True)

MODE = os.environ.get("SY_MODE", "transaction")
POOL_SIZE = int(os.environ.get("SY_POOL_SIZE", "0"))
# SY_DIRECT=1: talking to PostgreSQL itself (a reference run); checks about pooling are skipped.
POOLED = os.environ.get("SY_DIRECT") != "1"


def log(*args):
    print(*args, flush=True)


def eq(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def raises(exc_type, fn, what):
    """Runs fn, which must raise exc_type; returns the exception."""
    try:
        fn()
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001 - reported with its type
        raise AssertionError(f"{what}: expected {exc_type.__name__}, got {type(e).__name__}: {e}")
    raise AssertionError(f"{what}: expected {exc_type.__name__}, nothing was raised")


def check_servers(pids, what):
    """Through Shardyard, clients share at most pool-size servers."""
    log(f"{what}: {len(pids)} server backends")
    if POOLED:
        check(len(pids) <= POOL_SIZE, f"{what}: {len(pids)} servers for pool size {POOL_SIZE}")


def connect(**kwargs):
    """A connection configured as docs/drivers.md says for the pool mode under test."""
    if MODE == "transaction":
        # Named prepared statements do not outlive a transaction in transaction mode.
        kwargs.setdefault("prepare_threshold", None)
    return psycopg.connect("", **kwargs)  # host, port, user, password, dbname: PG* variables


def backend_pid(conn):
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


# ---------------------------------------------------------------------------------------------


def scenario_types():
    with connect(autocommit=True) as conn:
        eq(conn.info.parameter_status("client_encoding"), "UTF8", "client_encoding")
        eq(conn.info.parameter_status("integer_datetimes"), "on", "integer_datetimes")
        eq(conn.info.parameter_status("standard_conforming_strings"), "on", "scs")
        check(conn.info.server_version >= 150000, f"server_version {conn.info.server_version}")
        check(conn.info.backend_pid != 0, "BackendKeyData received")

        # Simple protocol (no parameters), including two statements in one query.
        eq(conn.execute("SELECT 1, 'x', NULL::text").fetchone(), (1, "x", None), "simple")
        cur = conn.execute("SELECT count(*) FROM items; SELECT v FROM items WHERE id = 3")
        eq(cur.fetchone(), (10,), "first result of a multi-statement query")
        check(cur.nextset(), "second result set")
        eq(cur.fetchone(), ("item 3",), "second result of a multi-statement query")

        conn.execute(
            "CREATE TABLE types_t (id int PRIMARY KEY, n numeric, ts timestamptz, b bytea,"
            " j jsonb, js json, u text, a int[], uu uuid, f float8, bo bool, d date,"
            " iv interval, big bigint)")
        values = (
            decimal.Decimal("12345678901234567890.123456789012345678901234567890"),
            datetime.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=ZoneInfo("America/New_York")),
            bytes(range(256)),
            {"k": ["\u00fc", 1, None, True], "n": 1.5, "emoji": "\U0001f600"},
            "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001f600 'quote' \"dq\" \\ back",
            [1, None, 3],
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            0.1,
            True,
            datetime.date(1999, 12, 31),
            datetime.timedelta(days=3, seconds=3723, microseconds=5),
            -(2**63),
        )
        insert = ("INSERT INTO types_t VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                  " %s, %s)")

        def row(i):
            n, ts, b, j, u, a, uu, f, bo, d, iv, big = values
            return (i, n, ts, b, Jsonb(j), Json(j), u, a, uu, f, bo, d, iv, big)

        with conn.cursor() as text_cur, conn.cursor(binary=True) as bin_cur:
            text_cur.execute(insert, row(1))  # text parameters
            bin_cur.execute(insert, row(2))  # binary parameters
            text_cur.execute(insert, (3,) + (None,) * 13)
            bin_cur.execute(insert, (4,) + (None,) * 13)
            select = ("SELECT n, ts, b, j, js, u, a, uu, f, bo, d, iv, big FROM types_t"
                      " WHERE id = %s")
            for cur, kind in ((text_cur, "text"), (bin_cur, "binary")):
                for i in (1, 2):
                    got = cur.execute(select, (i,)).fetchone()
                    want = values[:4] + (values[3],) + values[4:]
                    for k, (g, w) in enumerate(zip(got, want)):
                        eq(g, w, f"{kind} result of row {i} column {k}")
                    check(got[1].utcoffset() is not None, "timestamptz comes back aware")
                for i in (3, 4):
                    eq(cur.execute(select, (i,)).fetchone(), (None,) * 13, f"{kind} NULL row {i}")
            # What the server stored, computed on the server.
            text_cur.execute(
                "SELECT octet_length(b), md5(b), length(u), j->'k'->>0, n::text, a[2] IS NULL"
                " FROM types_t WHERE id IN (1, 2) ORDER BY id")
            want = (256, hashlib.md5(bytes(range(256))).hexdigest(), len(values[4]), "\u00fc",
                    "12345678901234567890.123456789012345678901234567890", True)
            eq(text_cur.fetchall(), [want, want], "values as the server stored them")
            # Parameters without a table: types inferred by the server, in both formats.
            for cur in (text_cur, bin_cur):
                cur.execute("SELECT %s::int + %s::int, %s || %s, %s::text IS NULL",
                            (40, 2, "\u00e5", "\u00df", None))
                eq(cur.fetchone(), (42, "\u00e5\u00df", True), "inferred parameters")

            # An empty query, and 8 MB values both ways in both formats.
            eq(text_cur.execute("").pgresult.status, pq.ExecStatus.EMPTY_QUERY, "empty query")
            big = bytes(range(256)) * (8 * 4096)
            for cur in (text_cur, bin_cur):
                cur.execute("SELECT md5(%s::bytea), %s::bytea, repeat('\u00e9', 4000000)",
                            (big, big))
                digest, echoed, text = cur.fetchone()
                eq(digest, hashlib.md5(big).hexdigest(), "8 MB parameter")
                eq(echoed == big, True, "8 MB result")
                eq(text == "\u00e9" * 4000000, True, "8 MB text result")

        # Server-side (named) cursors are transaction-scoped: fine in transaction mode.
        with connect() as tx_conn:
            with tx_conn.cursor(name="big_cursor") as named:
                named.itersize = 7
                named.execute("SELECT g, repeat('x', g) FROM generate_series(1, 100) g")
                rows = list(named)
            eq(len(rows), 100, "rows through a server-side cursor")
            eq(rows[99], (100, "x" * 100), "last row through a server-side cursor")
            tx_conn.commit()


def wait_for_a_server(a, b, c):
    """Pool size 2, both servers in open transactions: c waits, then sees a's commit only."""
    a.execute("BEGIN")
    a.execute("INSERT INTO ledger VALUES (500, 'held', 1)")
    b.execute("BEGIN")
    b.execute("INSERT INTO ledger VALUES (501, 'held', 1)")
    result = {}

    def third():
        result["count"] = c.execute(
            "SELECT count(*) FROM ledger WHERE who = 'held'").fetchone()[0]
        result["at"] = time.monotonic()

    t = threading.Thread(target=third)
    t.start()
    time.sleep(0.5)
    check("count" not in result, "the third client waited for a server")
    committed_at = time.monotonic()
    a.execute("COMMIT")
    t.join(10)
    eq(result.get("count"), 1, "the third client sees the committed row only")
    check(result["at"] >= committed_at, "the third client ran after the commit")
    b.execute("ROLLBACK")


def scenario_transactions():
    with connect(autocommit=True) as admin:
        admin.execute("CREATE TABLE ledger (id int PRIMARY KEY, who text, amount int)")

        def count(where="true"):
            return admin.execute(f"SELECT count(*) FROM ledger WHERE {where}").fetchone()[0]

        with connect() as conn:  # not autocommit: psycopg opens transactions itself
            conn.execute("INSERT INTO ledger VALUES (1, 'a', 10)")
            eq(count(), 0, "uncommitted row invisible to another client")
            conn.commit()
            eq(count(), 1, "committed row visible")
            conn.execute("INSERT INTO ledger VALUES (2, 'a', 20)")
            conn.rollback()
            eq(count(), 1, "rolled back row gone")

            # An error inside a transaction aborts it until ROLLBACK.
            conn.execute("INSERT INTO ledger VALUES (3, 'a', 30)")
            e = raises(errors.UniqueViolation,
                       lambda: conn.execute("INSERT INTO ledger VALUES (1, 'dup', 0)"),
                       "duplicate key in a transaction")
            eq(e.sqlstate, "23505", "sqlstate")
            eq(conn.info.transaction_status, pq.TransactionStatus.INERROR, "transaction status")
            raises(errors.InFailedSqlTransaction, lambda: conn.execute("SELECT 1"),
                   "statement in an aborted transaction")
            conn.rollback()
            eq(conn.execute("SELECT 1").fetchone(), (1,), "usable after rollback")
            conn.rollback()
            eq(count("id = 3"), 0, "the failed transaction's insert was rolled back")

            # Savepoints: SQL, and psycopg's nested transaction blocks.
            conn.execute("INSERT INTO ledger VALUES (10, 'sp', 1)")
            conn.execute("SAVEPOINT s1")
            raises(errors.UniqueViolation,
                   lambda: conn.execute("INSERT INTO ledger VALUES (10, 'sp', 2)"),
                   "duplicate key after a savepoint")
            conn.execute("ROLLBACK TO SAVEPOINT s1")
            conn.execute("INSERT INTO ledger VALUES (11, 'sp', 3)")
            conn.commit()
            eq(count("who = 'sp'"), 2, "rows around a rolled back savepoint")
            with conn.transaction():
                conn.execute("INSERT INTO ledger VALUES (20, 'nested', 1)")
                with conn.transaction():
                    conn.execute("INSERT INTO ledger VALUES (21, 'nested', 2)")
                with conn.transaction():
                    conn.execute("INSERT INTO ledger VALUES (22, 'nested', 3)")
                    raise psycopg.Rollback()  # rolls back to this block's savepoint only
            eq(count("who = 'nested'"), 2, "nested transaction blocks")

            # Pipeline mode: several Syncs in flight, an error in the middle.
            conn.autocommit = True
            with conn.pipeline():
                cur1 = conn.execute("INSERT INTO ledger VALUES (30, 'pipe', 1) RETURNING id")
                cur2 = conn.execute("SELECT count(*) FROM ledger WHERE who = 'pipe'")
            eq(cur1.fetchone(), (30,), "pipelined insert")
            eq(cur2.fetchone(), (1,), "pipelined select")
            try:
                with conn.pipeline():
                    conn.execute("INSERT INTO ledger VALUES (31, 'pipe', 1)")
                    conn.execute("INSERT INTO ledger VALUES (30, 'pipe', 1)")
                    conn.execute("INSERT INTO ledger VALUES (32, 'pipe', 1)")
                raise AssertionError("the pipeline with a duplicate key did not fail")
            except errors.UniqueViolation:
                pass
            # Between two Syncs is one implicit transaction: the error undid the first insert.
            eq(count("who = 'pipe'"), 1, "the failed pipeline wrote nothing")
            with conn.cursor() as cur:  # executemany pipelines its statements
                cur.executemany("INSERT INTO ledger VALUES (%s, 'many', %s)",
                                [(100 + i, i) for i in range(200)])
            eq(count("who = 'many'"), 200, "executemany rows")

        # Sharing: a transaction keeps its server; clients share the pool's servers.
        with connect(autocommit=True) as a, connect(autocommit=True) as b, \
                connect(autocommit=True) as c:
            with a.transaction():
                pids = {backend_pid(a) for _ in range(5)}
                eq(len(pids), 1, "one server for a whole transaction")
            seen = set()
            for _ in range(10):
                for conn in (a, b, c):
                    seen.add(backend_pid(conn))
            check_servers(seen, "three autocommit clients")

            if POOLED and POOL_SIZE == 2:
                wait_for_a_server(a, b, c)

        # Threads, each with its own connection, over the small pool.
        pids = set()
        failures = []
        lock = threading.Lock()

        def worker(w):
            try:
                with connect() as conn:
                    for i in range(25):
                        conn.execute("INSERT INTO ledger VALUES (%s, %s, %s)",
                                     (10000 + w * 100 + i, f"w{w}", i))
                        pid = backend_pid(conn)
                        if i % 5 == 4:
                            conn.rollback()
                        else:
                            conn.commit()
                        with lock:
                            pids.add(pid)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                failures.append(f"worker {w}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        eq(failures, [], "worker failures")
        eq(count("who LIKE 'w%'"), 8 * 20, "rows committed by the workers")
        check_servers(pids, "eight threads")


def scenario_session_params():
    a = connect(autocommit=True, application_name="client-a",
                options="-c TimeZone=Asia/Tokyo -c work_mem=7MB")
    b = connect(autocommit=True, application_name="client-b")
    with a, b:
        b.execute("SET TimeZone = 'America/New_York'")
        b.execute("SET IntervalStyle = 'iso_8601'")
        instant = "SELECT '2024-01-01 00:00:00+00'::timestamptz::text"
        for _ in range(3):
            eq(a.execute("SHOW TimeZone").fetchone()[0], "Asia/Tokyo", "a's TimeZone")
            eq(b.execute("SHOW TimeZone").fetchone()[0], "America/New_York", "b's TimeZone")
            eq(a.execute(instant).fetchone()[0], "2024-01-01 09:00:00+09", "a's rendering")
            eq(b.execute(instant).fetchone()[0], "2023-12-31 19:00:00-05", "b's rendering")
            eq(a.execute("SELECT current_setting('application_name')").fetchone()[0],
               "client-a", "a's application_name")
            eq(b.execute("SELECT current_setting('application_name')").fetchone()[0],
               "client-b", "b's application_name")
            eq(a.execute("SHOW work_mem").fetchone()[0], "7MB", "a's startup work_mem")
            eq(b.execute("SHOW work_mem").fetchone()[0], "4MB", "b's (default) work_mem")
            eq(a.execute("SELECT interval '1 day'::text").fetchone()[0], "1 day", "a's interval")
            eq(b.execute("SELECT interval '1 day'::text").fetchone()[0], "P1D", "b's interval")
        eq(a.info.parameter_status("TimeZone"), "Asia/Tokyo", "a's reported TimeZone")
        eq(b.info.parameter_status("TimeZone"), "America/New_York", "b's reported TimeZone")
        eq(a.info.parameter_status("application_name"), "client-a", "a's reported app name")
        eq(b.info.parameter_status("IntervalStyle"), "iso_8601", "b's reported IntervalStyle")
        eq(str(a.info.timezone), "Asia/Tokyo", "psycopg's idea of a's time zone")
        # Loaded timestamptz values carry the session's zone.
        ts = b.execute("SELECT '2024-01-01 00:00:00+00'::timestamptz").fetchone()[0]
        eq(ts.utcoffset(), datetime.timedelta(hours=-5), "b's timestamptz offset")
        if POOLED:
            eq(backend_pid(a), backend_pid(b), "both clients share the one server")

        # SET in a rolled back transaction, and SET LOCAL, do not stick.
        a.execute("BEGIN")
        a.execute("SET TimeZone = 'Europe/Paris'")
        eq(a.info.parameter_status("TimeZone"), "Europe/Paris", "reported inside the transaction")
        a.execute("ROLLBACK")
        eq(a.info.parameter_status("TimeZone"), "Asia/Tokyo", "reported after the rollback")
        eq(a.execute("SHOW TimeZone").fetchone()[0], "Asia/Tokyo", "after rollback")
        with a.transaction():
            a.execute("SET LOCAL application_name = 'local-name'")
            eq(a.execute("SHOW application_name").fetchone()[0], "local-name", "SET LOCAL")
        eq(a.execute("SHOW application_name").fetchone()[0], "client-a", "after SET LOCAL")
        eq(b.execute("SHOW TimeZone").fetchone()[0], "America/New_York", "b unchanged")
        # A committed SET sticks for that client only.
        a.execute("SET application_name = 'client-a2'")
        eq(a.execute("SHOW application_name").fetchone()[0], "client-a2", "a's new name")
        eq(b.execute("SHOW application_name").fetchone()[0], "client-b", "b's name")
        # So do settings PostgreSQL does not report, whether by SET or by set_config() with a
        # bind parameter (the extended protocol), in or out of a transaction block.
        a.execute("SET search_path = pg_catalog, public")
        a.execute("SET statement_timeout = '9s'")
        with a.transaction():
            a.execute("SELECT set_config('app.tenant', %s, false)", ("t-42",))
        tenant = "SELECT coalesce(current_setting('app.tenant', true), '')"
        for _ in range(2):
            eq(a.execute("SHOW search_path").fetchone()[0], "pg_catalog, public",
               "a's search_path")
            eq(b.execute("SHOW search_path").fetchone()[0], '"$user", public', "b's search_path")
            eq(a.execute("SHOW statement_timeout").fetchone()[0], "9s", "a's statement_timeout")
            eq(b.execute("SHOW statement_timeout").fetchone()[0], "0", "b's statement_timeout")
            eq(a.execute(tenant).fetchone()[0], "t-42", "a's custom setting")
            eq(b.execute(tenant).fetchone()[0], "", "b's custom setting")
        # A client in another encoding shares the server with UTF8 clients.
        with connect(autocommit=True, client_encoding="LATIN1") as latin:
            eq(latin.info.encoding, "iso8859-1", "psycopg's encoding")
            latin.execute("CREATE TABLE enc (v text)")
            latin.execute("INSERT INTO enc VALUES (%s)", ("caf\u00e9 \u00fc\u00df",))
            for _ in range(2):
                eq(b.execute("SELECT v, octet_length(v) FROM enc").fetchone(),
                   ("caf\u00e9 \u00fc\u00df", 10), "UTF8 client reads it")
                eq(latin.execute("SELECT v, current_setting('client_encoding') FROM enc")
                   .fetchone(), ("caf\u00e9 \u00fc\u00df", "LATIN1"), "LATIN1 reads it")
            e = raises(errors.UntranslatableCharacter,
                       lambda: latin.execute("SELECT chr(26085)"), "not in LATIN1")
            eq(e.sqlstate, "22P05", "untranslatable character")
            eq(b.execute("SELECT chr(26085)").fetchone(), ("\u65e5",), "UTF8 client")
        # A fresh client gets the server's defaults, not what others set.
        with connect(autocommit=True) as c:
            eq(c.execute("SHOW TimeZone").fetchone()[0], b.execute(
                "SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'").fetchone()[0],
               "a new client's TimeZone")
            eq(c.execute("SHOW application_name").fetchone()[0], "", "a new client's app name")
            eq(c.execute("SHOW IntervalStyle").fetchone()[0], "postgres", "its IntervalStyle")
            eq(c.execute("SHOW search_path").fetchone()[0], '"$user", public', "its search_path")


def scenario_reset_to_startup_value():
    # PostgreSQL: RESET returns a setting to the value the client's startup packet gave it.
    with connect(autocommit=True, application_name="startup-name",
                 options="-c TimeZone=Asia/Tokyo") as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET application_name = 'changed'")
        conn.execute("RESET TimeZone")
        conn.execute("RESET application_name")
        eq(conn.execute("SHOW TimeZone").fetchone()[0], "Asia/Tokyo", "TimeZone after RESET")
        eq(conn.execute("SHOW application_name").fetchone()[0], "startup-name",
           "application_name after RESET")
        conn.execute("RESET ALL")
        eq(conn.execute("SHOW TimeZone").fetchone()[0], "Asia/Tokyo", "TimeZone after RESET ALL")


def copy_rows(n):
    """Rows with escapes, unicode and NULLs, and the md5 the server computes for them."""
    rows = []
    for i in range(1, n + 1):
        name = f"name {i}\t\u00e9\u00e8 \\ {'new' if i % 7 == 0 else 'old'}\nline"
        amount = decimal.Decimal(f"{i}.{i % 100:02d}")
        note = None if i % 3 == 0 else f"\U0001f600 {i}"
        rows.append((i, name, amount, note))
    text = ",".join(f"{i}:{name}:{amount}:{'<null>' if note is None else note}"
                    for i, name, amount, note in rows)
    return rows, hashlib.md5(text.encode()).hexdigest()


SERVER_CHECKSUM = ("SELECT count(*), md5(string_agg(id || ':' || name || ':' || amount || ':' ||"
                   " coalesce(note, '<null>'), ',' ORDER BY id)) FROM {}")


def scenario_copy():
    rows, digest = copy_rows(10000)
    with connect(autocommit=True) as conn, connect(autocommit=True) as other:
        for table in ("copy_text", "copy_binary"):
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, amount numeric,"
                         " note text)")
        with conn.cursor() as cur:
            with cur.copy("COPY copy_text (id, name, amount, note) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            eq(cur.rowcount, 10000, "rows copied in (text)")
            with cur.copy("COPY copy_binary FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "numeric", "text"])
                for r in rows:
                    copy.write_row(r)
            eq(cur.rowcount, 10000, "rows copied in (binary)")
        # Another client, sharing the pool, sees the same data.
        for table in ("copy_text", "copy_binary"):
            eq(other.execute(SERVER_CHECKSUM.format(table)).fetchone(), (10000, digest),
               f"server checksum of {table}")

        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT id, name, amount, note FROM copy_text ORDER BY id)"
                          " TO STDOUT") as copy:
                copy.set_types(["int4", "text", "numeric", "text"])
                out = list(copy.rows())
            eq(len(out), 10000, "rows copied out (text)")
            eq(out == rows, True, "rows copied out (text) equal the rows copied in")
            with cur.copy("COPY copy_binary TO STDOUT (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "numeric", "text"])
                out = sorted(copy.rows())
            eq(out == rows, True, "rows copied out (binary) equal the rows copied in")
            # Raw blocks, checksummed.
            h = hashlib.md5()
            with cur.copy("COPY (SELECT id FROM copy_text ORDER BY id) TO STDOUT") as copy:
                for block in copy:
                    h.update(block)
            want = "".join(f"{i}\n" for i in range(1, 10001)).encode()
            eq(h.hexdigest(), hashlib.md5(want).hexdigest(), "raw COPY OUT checksum")

        # A row the server rejects: the error arrives, the connection stays usable.
        with conn.cursor() as cur:
            e = raises(errors.UniqueViolation, lambda: copy_some(cur, [(1, "dup", 1, None)]),
                       "COPY with a duplicate key")
            eq(e.sqlstate, "23505", "sqlstate of the failed COPY")
            eq(conn.execute("SELECT count(*) FROM copy_text").fetchone(), (10000,), "after")
            # The client gives up mid-COPY: psycopg sends CopyFail.
            e = raises(errors.QueryCanceled, lambda: copy_some(cur, rows[:5], fail=True),
                       "COPY abandoned by the client")
            check("client gave up" in str(e), f"CopyFail message relayed: {e}")
            eq(conn.execute("SELECT 42").fetchone(), (42,), "usable after CopyFail")
        # COPY in a transaction that rolls back.
        with conn.transaction(force_rollback=True):
            with conn.cursor() as cur:
                copy_some(cur, [(20001, "tx", 1, None), (20002, "tx", 2, None)])
            eq(conn.execute("SELECT count(*) FROM copy_text").fetchone(), (10002,), "in tx")
        eq(other.execute("SELECT count(*) FROM copy_text").fetchone(), (10000,), "rolled back")


def copy_some(cur, rows, fail=False):
    with cur.copy("COPY copy_text (id, name, amount, note) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(r)
        if fail:
            raise RuntimeError("client gave up")


class timed_cancel:
    """Cancels `conn`'s running query after `delay` seconds; `at` is when it did."""

    def __init__(self, conn, delay):
        self.at = None

        def fire():
            self.at = time.monotonic()
            conn.cancel()

        self.timer = threading.Timer(delay, fire)
        self.timer.start()

    def join(self):
        self.timer.join()
        return time.monotonic() - self.at


def expect_cancelled(conn, sql, what):
    """Runs `sql` on `conn`, cancels it after 0.5 s, expects 57014 soon after the cancel."""
    timer = timed_cancel(conn, 0.5)
    e = raises(errors.QueryCanceled, lambda: conn.execute(sql), what)
    elapsed = timer.join()
    eq(e.sqlstate, "57014", f"{what}: sqlstate")
    log(f"{what}: the error arrived {elapsed:.3f}s after conn.cancel()")
    check(elapsed < 1.5, f"{what}: the error arrived {elapsed:.2f}s after the cancel")


def scenario_cancel():
    with connect(autocommit=True) as conn:
        expect_cancelled(conn, "SELECT pg_sleep(10)", "cancel of a running query")
        eq(conn.execute("SELECT 1").fetchone(), (1,), "usable after cancel")

        # Inside a transaction: the transaction is aborted, ROLLBACK recovers it.
        conn.execute("BEGIN")
        expect_cancelled(conn, "SELECT pg_sleep(10)", "cancel in a transaction")
        eq(conn.info.transaction_status, pq.TransactionStatus.INERROR, "aborted transaction")
        conn.execute("ROLLBACK")
        eq(conn.execute("SELECT 2").fetchone(), (2,), "usable after rollback")

        # A cancel with nothing running does not hit a later query.
        conn.cancel()
        time.sleep(0.2)
        eq(conn.execute("SELECT pg_sleep(0.3), 3").fetchone(), ("", 3), "later query runs")

    if POOLED:
        cancel_on_a_shared_server()


def cancel_on_a_shared_server():
    """Pool size 1: a cancel from an idle client must not cancel another client's query on the
    server they share; a client waiting for the server can be cancelled."""
    with connect(autocommit=True) as a, connect(autocommit=True) as b:
        eq(backend_pid(a), backend_pid(b), "one shared server")
        timer = timed_cancel(b, 0.3)
        eq(a.execute("SELECT pg_sleep(1), 'done'").fetchone(), ("", "done"),
           "a's query survives b's cancel")
        timer.join()
        a.execute("BEGIN")  # holds the only server
        a.execute("SELECT 1")
        expect_cancelled(b, "SELECT 'never'", "cancel while waiting for a server")
        a.execute("COMMIT")
        eq(b.execute("SELECT 'after'").fetchone(), ("after",), "b usable after")


def scenario_errors():
    with connect(autocommit=True) as conn:
        e = raises(errors.UniqueViolation,
                   lambda: conn.execute("INSERT INTO items VALUES (1, 'dup')"), "23505")
        eq(e.sqlstate, "23505", "unique violation sqlstate")
        eq(e.diag.constraint_name, "items_pkey", "constraint name")
        eq(e.diag.table_name, "items", "table name")
        eq(e.diag.message_detail, "Key (id)=(1) already exists.", "detail")
        eq(e.diag.severity, "ERROR", "severity")
        e = raises(errors.UndefinedTable, lambda: conn.execute("SELECT * FROM no_such_table"),
                   "42P01")
        eq(e.sqlstate, "42P01", "undefined table sqlstate")
        eq(e.diag.statement_position, "15", "error position")
        for binary in (False, True):
            e = raises(errors.DivisionByZero,
                       lambda: conn.execute("SELECT 1 / %s", (0,), binary=binary), "22012")
            eq(e.sqlstate, "22012", f"division by zero sqlstate (binary={binary})")
        e = raises(errors.DivisionByZero, lambda: conn.execute("SELECT 1/0"), "simple 22012")
        e = raises(errors.SyntaxError, lambda: conn.execute("SELEC 1"), "42601")
        e = raises(errors.RaiseException, lambda: conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'custom' USING HINT = 'a hint'; END $$"), "P0001")
        eq(e.diag.message_hint, "a hint", "hint relayed")
        notices = []
        conn.add_notice_handler(lambda d: notices.append((d.severity, d.message_primary)))
        conn.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
        eq(notices, [("NOTICE", "hello 42")], "notices relayed")
        eq(conn.execute("SELECT 'still fine'").fetchone(), ("still fine",), "usable")

    if POOLED:
        shardyard_errors()


def shardyard_errors():
    """Errors Shardyard itself sends: pool wait timeout and refused logins."""
    with connect(autocommit=True) as holder, connect(autocommit=True) as waiter:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")  # the only server is now held
        start = time.monotonic()
        e = raises(errors.QueryCanceled, lambda: waiter.execute("SELECT 1"),
                   "query_wait_timeout")
        elapsed = time.monotonic() - start
        eq(e.sqlstate, "57014", "query_wait_timeout sqlstate")
        check(0.8 <= elapsed < 5, f"query_wait_timeout after {elapsed:.2f}s (configured 1s)")
        log(f"query_wait_timeout: {e} after {elapsed:.2f}s")
        holder.execute("COMMIT")
        eq(waiter.execute("SELECT 'ok'").fetchone(), ("ok",), "waiter usable after the timeout")
    e = raises(psycopg.OperationalError, lambda: connect(dbname="no_such_db"), "unknown db")
    check('FATAL:  database "no_such_db" does not exist' in str(e), f"unknown db: {e}")
    e = raises(psycopg.OperationalError, lambda: connect(password="wrong"), "wrong password")
    check('FATAL:  password authentication failed for user "app"' in str(e), f"password: {e}")
    e = raises(psycopg.OperationalError, lambda: connect(user="nobody"), "unknown user")
    check('FATAL:  password authentication failed for user "nobody"' in str(e), f"user: {e}")


def scenario_auth():
    """SCRAM (app), md5 (md5user) and trust (trustuser) logins, each with its own pool."""
    # PostgreSQL itself asks trustuser for its password (trustpw); Shardyard does not.
    trust_password = None if POOLED else "trustpw"
    for user, password in (("app", "secret"), ("md5user", "md5pw"), ("trustuser", trust_password)):
        with connect(user=user, password=password, autocommit=True) as conn:
            eq(conn.execute("SELECT current_user").fetchone(), (user,), f"{user} logged in")
            eq(conn.info.parameter_status("is_superuser"), "off", "is_superuser")
    e = raises(psycopg.OperationalError, lambda: connect(user="md5user", password="wrong"), "md5")
    check('password authentication failed for user "md5user"' in str(e), f"md5: {e}")


async def async_main():
    await_conns = [psycopg.AsyncConnection.connect(
        "", autocommit=True, prepare_threshold=None if MODE == "transaction" else 5)
        for _ in range(40)]
    conns = await asyncio.gather(*await_conns)
    try:
        await conns[0].execute("CREATE TABLE async_t (task int, step int, pid int,"
                               " PRIMARY KEY (task, step))")
        running = 0
        peak = 0

        async def task(n, conn):
            nonlocal running, peak
            pids = set()
            for step in range(10):
                running += 1
                peak = max(peak, running)
                try:
                    async with conn.transaction():
                        await conn.execute("INSERT INTO async_t VALUES (%s, %s, pg_backend_pid())",
                                           (n, step))
                        cur = await conn.execute("SELECT pid FROM async_t WHERE task = %s AND"
                                                 " step = %s", (n, step))
                        pid = (await cur.fetchone())[0]
                        cur = await conn.execute("SELECT pg_backend_pid(), pg_sleep(0.005)")
                        eq((await cur.fetchone())[0], pid, "same server within a transaction")
                        pids.add(pid)
                        if step % 4 == 3:
                            raise psycopg.Rollback()
                finally:
                    running -= 1
            return pids

        results = await asyncio.gather(*(task(n, c) for n, c in enumerate(conns)))
        all_pids = set().union(*results)
        check_servers(all_pids, "40 async clients")
        check(peak > POOL_SIZE, f"tasks overlapped (peak {peak})")
        cur = await conns[1].execute("SELECT count(*), count(DISTINCT task) FROM async_t")
        eq(await cur.fetchone(), (40 * 8, 40), "rows committed by the tasks")
        log(f"40 async clients, {len(all_pids)} servers, peak {peak} concurrent transactions")

        # Per-client settings under concurrency: each task's own TimeZone.
        zones = ["UTC", "Asia/Tokyo", "Europe/Paris", "America/New_York", "Australia/Sydney"]

        async def zone_task(n, conn):
            zone = zones[n % len(zones)]
            await conn.execute(f"SET TimeZone = '{zone}'")
            for _ in range(5):
                cur = await conn.execute("SELECT current_setting('TimeZone'), pg_sleep(0.002)")
                eq((await cur.fetchone())[0], zone, f"task {n}'s TimeZone")

        await asyncio.gather(*(zone_task(n, c) for n, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()


def scenario_async():
    asyncio.run(async_main())


def scenario_session_mode():
    check(MODE == "session", "run in session mode")
    with psycopg.connect("", autocommit=True) as a, psycopg.connect("", autocommit=True) as b:
        # Default prepare_threshold (5): the 6th run uses a server-side prepared statement.
        for i in range(10):
            eq(a.execute("SELECT %s::int * 2", (i,)).fetchone(), (i * 2,), "prepared query")
        eq(a.execute("SELECT %s::text || 'x'", ("b",), prepare=True).fetchone(), ("bx",), "prep")
        eq(a.execute("SELECT %s::text || 'x'", ("c",), prepare=True, binary=True).fetchone(),
           ("cx",), "prepared binary")
        names = a.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        check(names >= 2, f"server-side prepared statements exist ({names})")
        eq(b.execute("SELECT count(*) FROM pg_prepared_statements").fetchone(), (0,),
           "another client has none")
        # Each client keeps its own server for the whole session.
        pa = {backend_pid(a) for _ in range(5)}
        pb = {backend_pid(b) for _ in range(5)}
        eq(len(pa), 1, "a keeps one server")
        eq(len(pb), 1, "b keeps one server")
        check(pa != pb, "a and b have different servers")
        # Plain SET of any setting, temp tables and WITH HOLD cursors persist in session mode.
        a.execute("SET work_mem = '9MB'")
        a.execute("CREATE TEMP TABLE scratch AS SELECT 1 AS x")
        a.execute("BEGIN")
        a.execute("DECLARE held CURSOR WITH HOLD FOR SELECT generate_series(1, 3)")
        a.execute("COMMIT")
        eq(a.execute("FETCH ALL FROM held").fetchall(), [(1,), (2,), (3,)], "WITH HOLD cursor")
        eq(a.execute("SHOW work_mem").fetchone(), ("9MB",), "SET persists")
        eq(a.execute("SELECT x FROM scratch").fetchone(), (1,), "temp table persists")
        # LISTEN/NOTIFY: a notification reaches the listening session.
        heard = []
        a.add_notify_handler(lambda n: heard.append((n.channel, n.payload)))
        a.execute("LISTEN events")
        b.execute("NOTIFY events, 'hello'")
        deadline = time.monotonic() + 5
        while not heard and time.monotonic() < deadline:
            time.sleep(0.05)
            a.execute("SELECT 1")  # notifications are read with the next result
        eq(heard, [("events", "hello")], "notification received")
    # A new client on a returned server starts clean (no prepared statements, no temp table).
    with psycopg.connect("", autocommit=True) as c:
        eq(c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone(), (0,), "clean")
        eq(c.execute("SELECT to_regclass('pg_temp.scratch') IS NULL").fetchone(), (True,), "t")
        eq(c.execute("SHOW work_mem").fetchone(), ("4MB",), "work_mem reset")


def scenario_default_prepare_in_transaction_mode():
    # psycopg's defaults (prepare_threshold=5) with clients sharing servers.
    conns = [psycopg.connect("", autocommit=True) for _ in range(4)]
    try:
        for i in range(12):
            for n, c in enumerate(conns):
                eq(c.execute("SELECT %s::int + %s::int", (i, n)).fetchone(), (i + n,), "query")
    finally:
        for c in conns:
            c.close()


def scenario_prepared_isolation():
    """Issue 18: psycopg's defaults (prepare_threshold=5) with two clients whose statements get
    the same name (_pg3_0) on two server connections. Each result is the client's own or an
    error (26000 with the hint that names prepare_threshold); never the other client's."""
    a_sql = "SELECT v FROM items WHERE id = %s"
    b_sql = "SELECT (id * 1000)::text FROM items WHERE id = %s"
    queries = {"a": (a_sql, lambda i: f"item {i}"), "b": (b_sql, lambda i: str(i * 1000))}
    right, wrong, failures = [], [], []

    def run(conn, who, i, phase):
        sql, want = queries[who]
        try:
            got = conn.execute(sql, (i,)).fetchone()[0]
        except psycopg.Error as e:
            failures.append((who, i, phase, e))
            if not conn.autocommit:
                conn.rollback()  # psycopg then forgets its prepared statements (DEALLOCATE ALL)
            return
        (right if got == want(i) else wrong).append((who, i, phase, got))

    a = psycopg.connect("")  # defaults: autocommit off, prepare_threshold 5
    b = psycopg.connect("")
    try:
        eq(a.prepare_threshold, 5, "psycopg's default prepare_threshold")
        # Both in a transaction at once, so each holds a server connection of its own; the 6th
        # run of each query prepares it as _pg3_0 on that connection.
        for i in range(1, 7):
            run(a, "a", i, "first transaction")
            run(b, "b", i, "first transaction")
        if POOLED:
            check(backend_pid(a) != backend_pid(b), "a and b hold different server connections")
        for conn, sql in ((a, a_sql), (b, b_sql)):
            rows = conn.execute("SELECT name, statement FROM pg_prepared_statements").fetchall()
            eq(rows, [("_pg3_0", sql.replace("%s", "$1"))], "the client's statement is prepared")
        a.commit()
        b.commit()
        # Autocommit: through Shardyard each run is a transaction of its own, on whichever
        # server connection is free, where the other client's _pg3_0 was.
        a.autocommit = b.autocommit = True
        for i in range(1, 11):
            run(a, "a", i, "autocommit")
            run(b, "b", i, "autocommit")
        # Transactions again: the statement is bound after BEGIN.
        a.autocommit = b.autocommit = False
        for i in range(1, 7):
            run(a, "a", i, "second transaction")
            run(b, "b", i, "second transaction")
        a.commit()
        b.commit()
    finally:
        a.close()
        b.close()
    for who, i, phase, e in failures:
        log(f"  {who} {phase} #{i}: {e.sqlstate} {str(e).splitlines()[0]} (hint: "
            f"{e.diag.message_hint})")
    log(f"{len(right)} right, {len(wrong)} wrong, {len(failures)} errors")
    eq(wrong, [], "results that are another client's")
    eq(sum(1 for r in right if r[2] == "first transaction"), 12, "right in the first transactions")
    if not POOLED:
        eq(len(failures), 0, "errors from PostgreSQL itself")
        return
    for who, i, phase, e in failures:
        eq(e.sqlstate, "26000", f"{who} {phase} #{i}: {e}")
        check(isinstance(e, errors.InvalidSqlStatementName), f"{type(e).__name__}: {e}")
        if phase != "autocommit":
            # Inside a transaction block PostgreSQL answers, for the name Shardyard gave the
            # statement so that it fails where it stands.
            check('prepared statement "_pg3_0 (Shardyard: not prepared in this transaction)" '
                  'does not exist' in str(e), f"message: {e}")
        else:
            # Shardyard's own answer (no server lent yet), with what to change.
            check('prepared statement "_pg3_0" does not exist' in str(e), f"message: {e}")
            hint = e.diag.message_hint or ""
            check("prepare_threshold=None" in hint, f"hint names prepare_threshold: {hint!r}")
            check("Shardyard closes" in (e.diag.message_detail or ""), f"detail: {e}")
    check(len(failures) > 0, "psycopg bound a statement closed at the end of its transaction")


def main():
    name = sys.argv[1]
    fn = globals().get(f"scenario_{name}")
    if fn is None:
        log(f"unknown scenario {name}")
        return 2
    log(f"psycopg {psycopg.__version__} (libpq {pq.version()}), {MODE} mode, pool size "
        f"{POOL_SIZE}: {name}")
    start = time.monotonic()
    fn()
    log(f"PASS {name} ({time.monotonic() - start:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
