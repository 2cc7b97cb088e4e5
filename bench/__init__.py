"""Benchmarks that measure the service and its indexes; run each as ``python -m bench.NAME``."""
