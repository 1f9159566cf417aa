"""The bench/run harness: servers, targets, workloads, measurement and reports."""
