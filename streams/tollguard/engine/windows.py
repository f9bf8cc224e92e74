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


class SlidingWindow:
    """Times (ms) and one tag each (e.g. the destination) of recent matching calls.

    The window at time `now` holds calls with `now - span < ts <= now`.
    """

    __slots__ = ("tags", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.tags: list[str] = []

    def add(self, ts: int, tag: str, now: int, span: int, cap: int) -> int:
        """Record one call and return the count in the window ending at `now`."""
        times = self.times
        if not times or ts >= times[-1]:
            times.append(ts)
            self.tags.append(tag)
        else:
            # A late call: keep times sorted so pruning stays a prefix cut.
            pos = bisect_right(times, ts)
            times.insert(pos, ts)
            self.tags.insert(pos, tag)
        return self.prune(now, span, cap)

    def prune(self, now: int, span: int, cap: int) -> int:
        times = self.times
        cut = bisect_right(times, now - span) if times and times[0] <= now - span else 0
        excess = len(times) - cut - cap
        if excess > 0:
            cut += excess
        if cut:
            del times[:cut]
            del self.tags[:cut]
        return len(times)

    def __len__(self) -> int:
        return len(self.times)

    def tag_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tag in self.tags:
            counts[tag] = counts.get(tag, 0) + 1
        return counts
