"""Unit tests for stopping the harness's children: nothing they started may outlive them."""
import os
import select
import signal
import subprocess
import unittest

from bench.harness import procs


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie has already exited
    except FileNotFoundError:
        return False


class StopTest(unittest.TestCase):
    def test_a_wrappers_child_dies_with_it(self):
        # A wrapper killed outright leaves its child behind, as `strace -o` killed with -9 did.
        p = procs.popen(["/bin/sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE,
                        text=True)
        child = int(p.stdout.readline())
        self.assertTrue(alive(child))
        exited = os.pidfd_open(child)  # readable once the process has exited
        self.addCleanup(os.close, exited)
        procs.stop(p, sig=signal.SIGKILL, timeout=10)
        p.stdout.close()
        # SIGKILL lands asynchronously: wait for the exit itself (a generous bound, not a timing).
        ready, _, _ = select.select([exited], [], [], 30)
        self.assertEqual(ready, [exited])
        self.assertFalse(alive(child))
        self.assertNotIn(p, procs._children)  # pylint: disable=protected-access

    def test_stopping_a_child_that_already_exited_is_harmless(self):
        p = procs.popen(["/bin/true"])
        p.wait(timeout=10)
        self.assertEqual(procs.stop(p), 0)


if __name__ == "__main__":
    unittest.main()
