"""Exact sliding event-time windows with bounded memory.

A rule asks "are there at least N matching calls in the last X minutes?". To
answer that exactly we only ever need the newest N event times inside the
window: older ones cannot change the answer. So a window keeps at most `cap`
times (the rule's highest threshold), sorted, and forgets the rest. Below the
cap the count is exact; at the cap it means "cap or more", which is all a
threshold needs.
"""

from __future__ import annotations

from bisect import bisect_right

from msgspec import Struct, field


def _position(times: list[int], ts: int) -> int:
    """Where `ts` goes to keep `times` sorted (the end, unless the call is late)."""
    return len(times) if not times or ts >= times[-1] else bisect_right(times, ts)


def _expired(times: list[int], now: int, span: int, cap: int) -> int:
    """How many of the oldest entries have left the window or exceed the cap."""
    cut = bisect_right(times, now - span) if times and times[0] <= now - span else 0
    return max(cut, len(times) - cap)


def _count_tags(tags: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tag in tags:
        counts[tag] = counts.get(tag, 0) + 1
    return counts


# Window and other per-line state types are msgspec Structs: the changelog
# codec (`tollguard.engine.snapshot`) encodes and decodes them in C, tagged by
# class name, and `gc=False` spares the collector (and 16 bytes an object):
# line state is a tree, so it can hold no reference cycle.


class SlidingWindow(Struct, tag=True, array_like=True, gc=False):
    """Times (ms) and one tag each (e.g. the destination) of recent matching calls.

    The window at time `now` holds calls with `now - span < ts <= now`.
    """

    times: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def add(self, ts: int, tag: str, now: int, span: int, cap: int) -> int:
        """Record one call and return the count in the window ending at `now`."""
        times = self.times
        if not times and ts > now - span:
            # Exact-size lists: most windows only ever hold one call.
            self.times, self.tags = [ts], [tag]
            return 1
        pos = _position(times, ts)
        times.insert(pos, ts)
        self.tags.insert(pos, tag)
        if times[0] > now - span and len(times) <= cap:
            return len(times)  # nothing to forget: the common case
        return self.prune(now, span, cap)

    def prune(self, now: int, span: int, cap: int) -> int:
        times = self.times
        cut = _expired(times, now, span, cap)
        if cut:
            del times[:cut]
            del self.tags[:cut]
        return len(times)

    def __len__(self) -> int:
        return len(self.times)

    def tag_counts(self) -> dict[str, int]:
        return _count_tags(self.tags)


class KeyedWindow(Struct, tag=True, array_like=True, gc=False):
    """Recent calls with a key each (a number or a country), and how often each key occurs.

    Used by `distinct` (how many keys), `repeat` (how often this key) and range
    walks (how many distinct numbers under this number's range). Unlike a
    count window the answer depends on every call in the window, so it keeps
    all of them up to `cap` (the rule's `max_events`), oldest dropped first.

    `ranges` is only allocated for range walks: range -> distinct numbers in it.
    """

    range_digits: int = 0
    times: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.range_digits and self.ranges is None:
            self.ranges = {}

    def range_of(self, key: str) -> str:
        return key[: len(key) - self.range_digits]

    def add(self, ts: int, key: str, now: int, span: int, cap: int) -> None:
        times = self.times
        if times:
            pos = _position(times, ts)
            times.insert(pos, ts)
            self.keys.insert(pos, key)
        else:
            self.times, self.keys = [ts], [key]  # exact size, see SlidingWindow.add
            times = self.times
        counts = self.counts
        n = counts.get(key, 0)
        counts[key] = n + 1
        ranges = self.ranges
        if n == 0 and ranges is not None:
            r = key[: len(key) - self.range_digits]
            ranges[r] = ranges.get(r, 0) + 1
        if times[0] <= now - span or len(times) > cap:
            self.prune(now, span, cap)

    def prune(self, now: int, span: int, cap: int) -> None:
        times = self.times
        cut = _expired(times, now, span, cap)
        if not cut:
            return
        counts = self.counts
        ranges = self.ranges
        for key in self.keys[:cut]:
            n = counts[key] - 1
            if n:
                counts[key] = n
            else:
                del counts[key]
                if ranges is not None:
                    r = self.range_of(key)
                    left = ranges[r] - 1
                    if left:
                        ranges[r] = left
                    else:
                        del ranges[r]
        del times[:cut]
        del self.keys[:cut]

    def __len__(self) -> int:
        return len(self.times)


class SumWindow(Struct, tag=True, array_like=True, gc=False):
    """Recent calls with an integer amount each (e.g. cost), and the window's total.

    Entries carry the call id so a later event (a release with the real
    duration) can correct its amount in place. Oldest entries beyond `cap` are
    dropped, which can only lower the total.
    """

    times: list[int] = field(default_factory=list)
    amounts: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    total: int = 0

    def add(
        self, ts: int, amount: int, call_id: str, tag: str, now: int, span: int, cap: int
    ) -> int:
        times = self.times
        if times:
            pos = _position(times, ts)
            times.insert(pos, ts)
            self.amounts.insert(pos, amount)
            self.ids.insert(pos, call_id)
            self.tags.insert(pos, tag)
        else:  # exact size, see SlidingWindow.add
            self.times, self.amounts, self.ids, self.tags = [ts], [amount], [call_id], [tag]
            times = self.times
        self.total += amount
        if times[0] > now - span and len(times) <= cap:
            return self.total
        return self.prune(now, span, cap)

    def rescale(self, call_id: str, factor: float, now: int, span: int, cap: int) -> int | None:
        """Multiply the amount of a call still in the window; None if it is not there."""
        ids = self.ids
        for i in range(len(ids) - 1, -1, -1):
            if ids[i] == call_id:
                amount = round(self.amounts[i] * factor)
                self.total += amount - self.amounts[i]
                self.amounts[i] = amount
                return self.prune(now, span, cap)
        return None

    def prune(self, now: int, span: int, cap: int) -> int:
        times = self.times
        cut = _expired(times, now, span, cap)
        if cut:
            self.total -= sum(self.amounts[:cut])
            del times[:cut]
            del self.amounts[:cut]
            del self.ids[:cut]
            del self.tags[:cut]
        return self.total

    def __len__(self) -> int:
        return len(self.times)

    def tag_counts(self) -> dict[str, int]:
        return _count_tags(self.tags)
