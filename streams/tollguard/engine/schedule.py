"""When a rule is active, on event time, in the rule's IANA time zone.

A schedule is active at an instant when any of these holds, read on the local
clock of `timezone`:

* the local weekday is in `days` (all days if absent) and the local time of
  day is inside one of `hours` (all day if absent; "22:00-06:00" wraps midnight);
* the local weekday is in `all_day` (e.g. weekends);
* the local date is in `holidays`.

Converting an instant to local time costs about a microsecond, so the answer
is cached per UTC minute: a schedule's edges are whole local minutes and every
IANA offset in use is a whole number of minutes, so the answer is constant
within a UTC minute. Events arrive nearly in time order, so the cache hits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Schedule:
    timezone: str
    # (start, end) minutes of the local day, end exclusive; start > end wraps midnight.
    hours: tuple[tuple[int, int], ...] = ()
    days: frozenset[int] = frozenset(range(7))  # 0 = Monday
    all_day: frozenset[int] = frozenset()
    holidays: frozenset[date] = frozenset()
    # [minute key, answer]: a one-entry cache, the only mutable part.
    _cache: list[int] = field(default_factory=lambda: [-1, 0], compare=False, repr=False)
    _zone: ZoneInfo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))

    def active(self, ts_ms: int) -> bool:
        cache = self._cache
        minute = ts_ms // MINUTE_MS
        if cache[0] == minute:
            return cache[1] == 1
        answer = self.active_uncached(ts_ms)
        cache[0] = minute
        cache[1] = 1 if answer else 0
        return answer

    def active_uncached(self, ts_ms: int) -> bool:
        local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(self._zone)
        weekday = local.weekday()
        if weekday in self.all_day or (self.holidays and local.date() in self.holidays):
            return True
        if weekday not in self.days:
            return False
        if not self.hours:
            return True
        minute = local.hour * 60 + local.minute
        for start, end in self.hours:
            if start <= end:
                if start <= minute < end:
                    return True
            elif minute >= start or minute < end:
                return True
        return False


def parse_hours(text: str) -> tuple[int, int] | None:
    """'22:00-06:00' to (1320, 360); None if unreadable."""
    parts = text.replace(" ", "").split("-")
    if len(parts) != 2:
        return None
    out: list[int] = []
    for part in parts:
        hm = part.split(":")
        if len(hm) != 2 or not (hm[0].isdigit() and hm[1].isdigit()):
            return None
        h, m = int(hm[0]), int(hm[1])
        if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
            return None
        out.append(h * 60 + m)
    if out[0] == out[1]:
        return None
    return out[0], out[1]
