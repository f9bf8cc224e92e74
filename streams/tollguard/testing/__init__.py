"""Helpers for tests and benchmarks: real worker processes and topic I/O (not for production)."""
