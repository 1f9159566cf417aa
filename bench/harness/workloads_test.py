"""Unit tests for how bench/run prints a target's figure next to its verdict."""
import unittest

from bench.harness.workloads import GOALS, Goal


class GoalShownTest(unittest.TestCase):
    def test_two_decimals_when_they_agree_with_the_verdict(self):
        g = Goal("w", "tps", "pgbouncer", ">=", 1.1, "TPS ≥ 1.1× PgBouncer")
        self.assertEqual(g.shown(1.0456), "1.05× pgbouncer")
        self.assertEqual(g.shown(1.1234), "1.12× pgbouncer")
        self.assertEqual(g.shown(1.1), "1.10× pgbouncer")

    def test_more_decimals_when_rounding_would_contradict_the_verdict(self):
        ge = Goal("w", "tps", "pgbouncer", ">=", 1.1, "TPS ≥ 1.1× PgBouncer")
        self.assertFalse(ge.check(1.09856))
        self.assertEqual(ge.shown(1.09856), "1.099× pgbouncer")
        self.assertEqual(ge.shown(1.09996), "1.09996× pgbouncer")
        le = Goal("w", "cpu_us_per_txn", "pgbouncer", "<=", 0.8, "CPU ≤ 0.8× PgBouncer")
        self.assertFalse(le.check(0.8004))
        self.assertEqual(le.shown(0.8004), "0.8004× pgbouncer")
        self.assertEqual(le.shown(0.8004, name_versus=False), "0.8004×")

    def test_absolute_values_are_whole_numbers(self):
        g = Goal("idle-10000", "idle_bytes_per_client", None, "<=", 1024, "≤ 1 KB")
        self.assertEqual(g.shown(917.094), "917")
        self.assertEqual(g.shown(12345.6), "12,346")

    def test_no_printed_figure_contradicts_its_verdict(self):
        for g in GOALS:
            for factor in (0.99, 0.999, 0.9999, 0.99999, 1.0, 1.00001, 1.0001, 1.001, 1.01):
                value = g.bound * factor
                printed = float(g.shown(value).split("×")[0].replace(",", ""))
                if g.versus:
                    self.assertEqual(g.check(printed), g.check(value), (g.text, value))


if __name__ == "__main__":
    unittest.main()
