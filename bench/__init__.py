"""Reproducible benchmarks for seat-revoker (see bench/README.md; run with ``make bench``)."""
