"""Benchmarks (never timed unit tests): ``python -m bench`` runs them all; see bench/README.md."""
