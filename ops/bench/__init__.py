"""Benchmarks (not tests): each prints its figures beside the machine's own ceiling measured
in the same run. Results and the machine are recorded in docs/benchmarks.md."""
