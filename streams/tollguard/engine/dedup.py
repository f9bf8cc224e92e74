"""Recently seen (call_id, type) pairs, for counting a repeated event once.

Only events inside the allowed lateness can be accepted at all, so duplicates
need remembering for about that long. Ids live in generations of one lateness
span each, keyed on event time; the oldest generation is dropped whole, which
keeps memory at roughly (event rate x 3 lateness spans) with no per-id timers.

A generation is split into shards by key, in unequal shares. A table that
outgrows itself is rebuilt whole in one call: 20 ms at 300,000 ids and 73 ms
at 1.2M (measured), and no event is decided meanwhile. One table per
generation did that once a minute per partition at a few thousand events a
second per partition. Shards cut each rebuild to a fraction of the generation,
and their unequal shares make them cross their thresholds at different
moments, where equal shares would grow alike and rebuild together.

The shards are dicts of int keys and None values, not sets: CPython never
tracks such a dict in the cyclic garbage collector, while a full collection
walks every id of a set, 144-178 ms per 3M ids (measured), with no event
decided meanwhile; the filter holds millions. An add costs 0.1-0.2 µs more
(measured).
"""

from __future__ import annotations

from bisect import bisect

_SHARDS = 16
_ROUTE_BITS = 8


def _route() -> tuple[int, ...]:
    """Shard for each value of a key's low bits: shares from 1 to almost 2, geometric."""
    weights = [2 ** (i / _SHARDS) for i in range(_SHARDS)]
    cumulative = [sum(weights[: i + 1]) / sum(weights) for i in range(_SHARDS)]
    slots = 1 << _ROUTE_BITS
    return tuple(bisect(cumulative, (j + 0.5) / slots) for j in range(slots))


_ROUTE = _route()
_MASK = (1 << _ROUTE_BITS) - 1
# Stands in for a missing neighbour generation; only ever read.
_NONE: tuple[dict[int, None], ...] = ({},) * _SHARDS


class RecentIds:
    __slots__ = ("_current", "_gens", "_hi", "_lo", "_next", "_prev", "_span")

    def __init__(self, span_ms: int) -> None:
        self._span = max(span_ms, 1)
        self._gens: dict[int, tuple[dict[int, None], ...]] = {}
        # The generation events mostly fall in, and its neighbours, so the
        # common add is three shard probes and no lookup in _gens. Its event
        # times are [_lo, _hi): two comparisons, where dividing an event time
        # (a two-digit int) cost ~150 instructions an event (callgrind).
        self._lo = self._hi = 0
        self._current: tuple[dict[int, None], ...] = tuple({} for _ in range(_SHARDS))
        self._prev: tuple[dict[int, None], ...] = _NONE
        self._next: tuple[dict[int, None], ...] = _NONE

    def add(self, call_id: str, etype: str, ts_ms: int) -> bool:
        """Remember the pair; False if it was already seen."""
        key = hash((call_id, etype))
        if not self._lo <= ts_ms < self._hi:
            self._focus(ts_ms // self._span)
        shard = _ROUTE[key & _MASK]
        current = self._current[shard]
        if key in current or key in self._prev[shard] or key in self._next[shard]:
            return False
        current[key] = None
        return True

    def _focus(self, gen: int) -> None:
        gens = self._gens
        current = gens.get(gen)
        if current is None:
            current = gens[gen] = tuple({} for _ in range(_SHARDS))
            newest = max(gens)
            for old in [g for g in gens if g < newest - 2]:
                del gens[old]
        self._lo = gen * self._span
        self._hi = self._lo + self._span
        self._current = current
        self._prev = gens.get(gen - 1) or _NONE
        self._next = gens.get(gen + 1) or _NONE

    def shard_sizes(self) -> list[int]:
        """Ids per shard, over all generations (for tests and benches)."""
        return [sum(len(shards[i]) for shards in self._gens.values()) for i in range(_SHARDS)]

    def __len__(self) -> int:
        return sum(self.shard_sizes())
