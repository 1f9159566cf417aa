"""Unit tests for bench/run's chart: every subset of workloads and targets gives a PNG."""
import os
import tempfile
import unittest

from bench.harness import report
from bench.harness.workloads import WORKLOADS

LABELS = {"direct": "PostgreSQL", "pgbouncer": "PgBouncer", "shardyard": "Shardyard"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_summary(workloads, targets):
    summary = {}
    for w in workloads:
        for t in targets:
            row = {"tps": 1000.0 + len(t), "lat_p99_ms": 2.5}
            if t != "direct":
                row["cpu_us_per_txn"] = 11.0
                if w.kind == "idle":
                    row = {"idle_bytes_per_client": 917.0}
            summary[(w.name, t)] = row
    return summary


class ChartTest(unittest.TestCase):
    def chart(self, workloads, targets):
        with tempfile.TemporaryDirectory() as out:
            err = report.write_chart(out, "c.png", fake_summary(workloads, targets), workloads,
                                     targets, LABELS)
            path = os.path.join(out, "c.png")
            magic = b""
            if os.path.exists(path):
                with open(path, "rb") as f:
                    magic = f.read(8)
            leftovers = sorted(set(os.listdir(out)) - {"c.png"})
        return err, magic, leftovers

    def test_every_workload_and_target(self):
        err, magic, leftovers = self.chart(WORKLOADS, ["direct", "pgbouncer", "shardyard"])
        self.assertIsNone(err)
        self.assertEqual(magic, PNG_MAGIC)
        self.assertEqual(leftovers, [])

    def test_pgbench_workloads_without_the_idle_one_or_direct(self):
        pg = [w for w in WORKLOADS if w.kind == "pgbench"][:2]
        err, magic, _ = self.chart(pg, ["pgbouncer", "shardyard"])
        self.assertIsNone(err)
        self.assertEqual(magic, PNG_MAGIC)

    def test_only_the_idle_workload(self):
        idle = [w for w in WORKLOADS if w.kind == "idle"]
        err, magic, _ = self.chart(idle, ["pgbouncer", "shardyard"])
        self.assertIsNone(err)
        self.assertEqual(magic, PNG_MAGIC)

    def test_nothing_measured_is_an_error_not_an_empty_chart(self):
        idle = [w for w in WORKLOADS if w.kind == "idle"]
        err, magic, _ = self.chart(idle, ["direct"])
        self.assertIn("nothing to chart", err)
        self.assertEqual(magic, b"")


if __name__ == "__main__":
    unittest.main()
