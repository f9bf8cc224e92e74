"""Test-side names for the worker-process helpers (they live in the package for bench/ too)."""

from tollguard.testing.worker_process import (
    WorkerProcess,
    events_as_records,
    isolated_settings,
    produce,
    read_until,
    settings_env,
)

__all__ = [
    "WorkerProcess",
    "events_as_records",
    "isolated_settings",
    "produce",
    "read_until",
    "settings_env",
]
