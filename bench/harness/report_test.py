"""Unit tests for bench/run's report: the chart for any subset of workloads and targets, and
the rep-by-rep pairs next to each target."""
import os
import tempfile
import unittest

from bench.harness import report
from bench.harness.workloads import WORKLOADS, Goal

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


def run_row(workload, target, rep, tps):
    return {"workload": workload, "target": target, "rep": rep, "tps": tps}


class PairTest(unittest.TestCase):
    GOAL = Goal("w", "tps", "pgbouncer", ">=", 1.1, "TPS ≥ 1.1× PgBouncer")

    def test_pairs_are_matched_by_repetition_not_by_order(self):
        rows = [run_row("w", "shardyard", 2, 330.0), run_row("w", "pgbouncer", 1, 100.0),
                run_row("w", "shardyard", 1, 105.0), run_row("w", "pgbouncer", 2, 300.0),
                run_row("other", "pgbouncer", 1, 1.0), run_row("w", "direct", 1, 500.0)]
        self.assertEqual(report.pair_ratios(rows, "w", "tps", "shardyard", "pgbouncer"),
                         [1.05, 1.1])

    def test_a_repetition_missing_one_side_is_left_out(self):
        rows = [run_row("w", "shardyard", 1, 110.0), run_row("w", "pgbouncer", 1, 100.0),
                run_row("w", "shardyard", 2, 120.0),
                {"workload": "w", "target": "pgbouncer", "rep": 2, "tps": None}]
        self.assertEqual(len(report.pair_ratios(rows, "w", "tps", "shardyard", "pgbouncer")), 1)

    def test_description_counts_the_pairs_that_meet_the_goal(self):
        self.assertEqual(report.describe_pairs(self.GOAL, [1.03, 1.1, 1.08, 1.12, 1.05]),
                         "1.03–1.12×, 2 of 5 pairs meet it")
        self.assertEqual(report.describe_pairs(self.GOAL, [1.2]), "")
        # Printed as the verdict reads: 1.0996 does not meet 1.1, so it is not shown as 1.10.
        self.assertEqual(report.describe_pairs(self.GOAL, [1.0996, 1.0991]),
                         "1.099–1.0996×, 0 of 2 pairs meet it")

    def test_markdown_shows_the_pairs_next_to_the_median(self):
        wl = [w for w in WORKLOADS if w.name == "select-simple-1000"]
        rows = []
        for rep, (pgb, sy) in enumerate([(100.0, 108.0), (100.0, 111.0), (100.0, 103.0)], 1):
            rows += [run_row(wl[0].name, "pgbouncer", rep, pgb),
                     run_row(wl[0].name, "shardyard", rep, sy)]
        summary = report.summarize(rows)
        meta = {"argv": "", "date": ""}
        with tempfile.TemporaryDirectory() as out:
            path = os.path.join(out, "latest.md")
            report.write_markdown(path, meta=meta, summary=summary, workloads=wl,
                                  targets=["pgbouncer", "shardyard"], labels=LABELS,
                                  chart_name=None, rows=rows)
            with open(path, encoding="utf-8") as f:
                text = f.read()
        self.assertIn("| TPS ≥ 1.1× PgBouncer | 1.08× pgbouncer | **missed** | "
                      "1.03–1.11×, 1 of 3 pairs meet it |", text)


if __name__ == "__main__":
    unittest.main()
