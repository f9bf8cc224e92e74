"""Recently seen (call_id, type) pairs, for counting a repeated event once.

Only events inside the allowed lateness can be accepted at all, so duplicates
need remembering for about that long. Ids live in generations of one lateness
span each, keyed on event time; the oldest generation is dropped whole, which
keeps memory at roughly (event rate x 3 lateness spans) with no per-id timers.
"""

from __future__ import annotations


class RecentIds:
    __slots__ = ("_gens", "_span")

    def __init__(self, span_ms: int) -> None:
        self._span = max(span_ms, 1)
        self._gens: dict[int, set[int]] = {}

    def add(self, call_id: str, etype: str, ts_ms: int) -> bool:
        """Remember the pair; False if it was already seen."""
        key = hash((call_id, etype))
        gen = ts_ms // self._span
        gens = self._gens
        for g in (gen, gen - 1, gen + 1):
            seen = gens.get(g)
            if seen is not None and key in seen:
                return False
        current = gens.get(gen)
        if current is None:
            current = gens[gen] = set()
            newest = max(gens)
            for old in [g for g in gens if g < newest - 2]:
                del gens[old]
        current.add(key)
        return True

    def __len__(self) -> int:
        return sum(len(s) for s in self._gens.values())
