"""Give freed heap memory back to the operating system.

CPython frees a large object (a line table's old array after it grows, a
fetched batch of records) to the C allocator, and glibc keeps most of that
memory mapped: a worker's RSS then reflects its peak, not its state (about
20 % more than the live heap at 10^6 lines, see docs/performance.md).
`malloc_trim(0)` hands free pages back; on a 400 MB heap it takes ~4 ms, so
the worker calls it once per eviction scan, not per batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
    _trim = None


def release_free_memory() -> bool:
    """Return free heap pages to the OS; False where the C library cannot."""
    if _trim is None:
        return False
    _trim(0)
    return True
