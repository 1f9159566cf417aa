"""Unit tests for how bench/run reads pgbench's per-transaction logs, kept or not."""
import os
import tempfile
import unittest

from bench.harness.runner import fresh_log_prefix, read_pgbench_logs

# pgbench --log lines: client, transaction, latency µs, script, end time (s, µs).
LOG_A = "0 1 1500 0 1795386700 467274\n1 1 2500 0 1795386700 467300\n"
LOG_B = "2 1 900 0 1795386700 467400\n3 1 failed 0 1795386700 467500\n"


class PgbenchLogTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()  # pylint: disable=consider-using-with
        self.addCleanup(self.dir.cleanup)

    def write(self, name, text):
        with open(os.path.join(self.dir.name, name), "w", encoding="ascii") as f:
            f.write(text)

    def test_reads_every_thread_file_and_removes_them(self):
        self.write("w-t-1.100", LOG_A)
        self.write("w-t-1.100.1", LOG_B)
        latencies, failed = read_pgbench_logs(os.path.join(self.dir.name, "w-t-1"))
        self.assertEqual(latencies, [900, 1500, 2500])
        self.assertEqual(failed, 1)
        self.assertEqual(os.listdir(self.dir.name), [])

    def test_keep_leaves_the_files(self):
        self.write("w-t-1.100", LOG_A)
        latencies, _ = read_pgbench_logs(os.path.join(self.dir.name, "w-t-1"), keep=True)
        self.assertEqual(latencies, [1500, 2500])
        self.assertEqual(os.listdir(self.dir.name), ["w-t-1.100"])

    def test_a_retried_run_gets_a_prefix_no_kept_log_uses(self):
        first = fresh_log_prefix(self.dir.name, "w-t-1")
        self.assertEqual(first, os.path.join(self.dir.name, "w-t-1"))
        self.write("w-t-1.100", LOG_A)  # the first attempt's log, kept
        self.write("w-t-10.300", LOG_A)  # another repetition's: not in the way
        second = fresh_log_prefix(self.dir.name, "w-t-1")
        self.assertEqual(second, os.path.join(self.dir.name, "w-t-1-try2"))
        self.write("w-t-1-try2.200", LOG_B)
        latencies, _ = read_pgbench_logs(second, keep=True)
        self.assertEqual(latencies, [900])
        self.assertEqual(fresh_log_prefix(self.dir.name, "w-t-1"),
                         os.path.join(self.dir.name, "w-t-1-try3"))


if __name__ == "__main__":
    unittest.main()
