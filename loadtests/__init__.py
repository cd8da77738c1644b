"""Load and latency benchmarks; each prints its figures (run with ``python -m loadtests.X``)."""
