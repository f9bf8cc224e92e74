"""`distinct`: how many different numbers, countries or numbers-in-one-range a line dials.

* `of: numbers`: distinct dialled numbers in the window (Wangiri callbacks,
  test-number sweeps before a flood);
* `of: countries`: distinct destinations (countries, and Caribbean ranges
  inside +1 count as their own) in the window: a PBX spraying many countries;
* `of: ranges`: a range walk. Numbers are grouped by their range (the number
  without its last `range_digits` digits) and the value is how many distinct
  numbers of the dialled number's range are in the window: attackers walk
  through one revenue-share allocation number by number.

Windows keep every call up to the rule's `max_events` (oldest dropped first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollguard.engine.events import CallEvent
from tollguard.engine.kinds.base import NO_DECISION, Kind, fmt
from tollguard.engine.windows import KeyedWindow

NUMBERS = "numbers"
COUNTRIES = "countries"
RANGES = "ranges"
OF_VALUES = (NUMBERS, COUNTRIES, RANGES)


@dataclass(frozen=True, slots=True)
class DistinctParams:
    of: str = NUMBERS
    range_digits: int = 3


class DistinctKind(Kind):
    name = "distinct"

    def line_level(self, rule: Any) -> bool:
        return bool(rule.params.of != RANGES)

    def new_state(self, rule: Any) -> KeyedWindow:
        params: DistinctParams = rule.params
        return KeyedWindow(params.range_digits if params.of == RANGES else 0)

    def observe(self, rule: Any, st: Any, event: CallEvent, tag: str, line: Any) -> float:
        window: KeyedWindow = st
        of = rule.params.of
        if of == COUNTRIES:
            key = tag
        else:
            if event.e164 is None:
                return NO_DECISION
            key = event.e164
        window.add(event.ts_ms, key, line.max_ts, rule.window_ms, rule.max_events)
        if window.ranges is not None:
            return window.ranges.get(window.range_of(key), 0)
        return len(window.counts)

    def evidence(self, rule: Any, st: Any) -> tuple[int, int, dict[str, int]]:
        window: KeyedWindow = st
        by_dest = dict(window.counts) if rule.params.of == COUNTRIES else {}
        return window.times[0], window.times[-1], by_dest

    def reason(
        self, rule: Any, value: float, threshold: float, span: str, places: str, event: CallEvent
    ) -> str:
        of = rule.params.of
        if of == COUNTRIES:
            return f"{fmt(value)} destinations dialled in {span} {places}, limit {fmt(threshold)}"
        if of == RANGES:
            e164 = event.e164 or ""
            rng = e164[: len(e164) - rule.params.range_digits]
            return (
                f"{fmt(value)} different numbers under {rng} in {span} (range walk), "
                f"limit {fmt(threshold)}"
            )
        return f"{fmt(value)} different numbers dialled in {span}, limit {fmt(threshold)}"


KIND = DistinctKind()
