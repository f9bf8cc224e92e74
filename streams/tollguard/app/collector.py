"""Keep the garbage collector's pauses short in a worker holding millions of lines.

No event is decided while a collection runs, so its length adds straight to
decision latency. `tollguard_gc_pause_seconds` shows what it costs.
"""

from __future__ import annotations

import gc

# A young collection every this many events, and of the middle generation too
# every MIDDLE_EVERY of them (CPython's own ratio is 10 to 20).
YOUNG_EVERY_EVENTS = 5_000
MIDDLE_EVERY = 10


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a process holding millions of lines.

    Line state holds no reference cycles, yet every tracked object is scanned
    again as state grows; with the default thresholds that cost a quarter of
    the hot path (bench/throughput.py). Objects alive after start-up (rule
    tables, numbering data, imported modules) are frozen out of collections,
    and CPython's own young collections wait for 50,000 allocations instead
    of 700: the worker runs them itself between batches (YoungCollections).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class YoungCollections:
    """Paces the young collections by events handled, to run them between batches.

    An event replaces its line's window tuples with new ones and the old ones
    die. CPython starts a young collection when allocations outrun
    deallocations by its threshold, so replacements never start one: the young
    generation grew to every window touched since the last collection (170,000
    objects at 100,000 lines, traced), and when other growth started one it
    stopped the worker for 50-100 ms at 20,000 events/s, more with more lines.
    Collected every 5,000 events, it holds only what those events made: 1 ms.
    """

    def __init__(
        self, every_events: int = YOUNG_EVERY_EVENTS, middle_every: int = MIDDLE_EVERY
    ) -> None:
        self.every_events = every_events
        self.middle_every = middle_every
        self._events = 0.0
        self._rounds = 0

    def due(self, events: float) -> int | None:
        """Count a batch's events; the generation to collect now, or None."""
        self._events += events
        if self._events < self.every_events:
            return None
        self._events = 0.0
        self._rounds += 1
        return 1 if self._rounds % self.middle_every == 0 else 0
