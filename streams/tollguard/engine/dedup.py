"""Recently seen (call_id, type) pairs, for counting a repeated event once.

Only events inside the allowed lateness can be accepted at all, so duplicates
need remembering for about that long. Ids live in generations of one lateness
span each, keyed on event time; the oldest generation is dropped whole, which
keeps memory at roughly (event rate x 3 lateness spans) with no per-id timers.
"""

from __future__ import annotations


class RecentIds:
    __slots__ = ("_current", "_gen", "_gens", "_next", "_prev", "_span")

    def __init__(self, span_ms: int) -> None:
        self._span = max(span_ms, 1)
        self._gens: dict[int, set[int]] = {}
        # The generation events mostly fall in, and its neighbours, so the
        # common add is three set probes and no dict lookups.
        self._gen = -1
        self._current: set[int] = set()
        self._prev: set[int] = set()
        self._next: set[int] = set()

    def add(self, call_id: str, etype: str, ts_ms: int) -> bool:
        """Remember the pair; False if it was already seen."""
        key = hash((call_id, etype))
        gen = ts_ms // self._span
        if gen != self._gen:
            self._focus(gen)
        if key in self._current or key in self._prev or key in self._next:
            return False
        self._current.add(key)
        return True

    def _focus(self, gen: int) -> None:
        gens = self._gens
        current = gens.get(gen)
        if current is None:
            current = gens[gen] = set()
            newest = max(gens)
            for old in [g for g in gens if g < newest - 2]:
                del gens[old]
        self._gen = gen
        self._current = current
        self._prev = gens.get(gen - 1) or set()
        self._next = gens.get(gen + 1) or set()

    def __len__(self) -> int:
        return sum(len(s) for s in self._gens.values())
