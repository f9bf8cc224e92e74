"""`new_destination`: calls to a destination never seen on the line in its learned history.

Per line the rule remembers the destinations (countries; Caribbean ranges
inside +1 count as their own) the line has called, with when each was first
seen, bounded to `max_destinations` (least recently called forgotten first).

* While the line is younger than `learn` (from its first event of any kind)
  it only learns: everything it calls is its normal.
* After that, a call to a destination first seen less than one `window` ago
  is a *new-destination call*; the value is how many such calls the line made
  in the window. A destination still called after a full window becomes
  normal (a new foreign partner is learned, not blocked forever).

Seed case: a PBX with months of domestic traffic suddenly calls Sierra Leone
every 25 s; all of those calls are new-destination calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from msgspec import Struct, field

from tollguard.engine.events import CallEvent
from tollguard.engine.kinds.base import NO_DECISION, Kind, fmt
from tollguard.engine.windows import SlidingWindow


@dataclass(frozen=True, slots=True)
class NewDestinationParams:
    learn_ms: int = 7 * 86_400_000
    max_destinations: int = 64


class NewDestinationState(Struct, tag=True, array_like=True, gc=False):
    # destination tag -> event time first seen; dict order = least recently called first
    seen: dict[str, int] = field(default_factory=dict)
    # Created by the first call that counts: a line still learning, or one
    # that only calls known destinations, never needs it.
    window: SlidingWindow | None = None


class NewDestinationKind(Kind):
    name = "new_destination"

    def line_level(self, rule: Any) -> bool:
        return False

    def new_state(self, rule: Any) -> NewDestinationState:
        return NewDestinationState()

    def observe(self, rule: Any, st: Any, event: CallEvent, tag: str, line: Any) -> float:
        state: NewDestinationState = st
        params: NewDestinationParams = rule.params
        ts = event.ts_ms
        seen = state.seen
        first = seen.pop(tag, None)
        if first is None or ts < first:
            first = ts
        seen[tag] = first  # re-inserted: now the most recently called
        if len(seen) > params.max_destinations:
            del seen[next(iter(seen))]
        learned_until = line.first_ts + params.learn_ms
        if ts < learned_until or first < learned_until or ts - first >= rule.window_ms:
            return NO_DECISION
        window = state.window
        if window is None:
            window = state.window = SlidingWindow()
        return window.add(ts, tag, line.max_ts, rule.window_ms, rule.cap)

    def evidence(self, rule: Any, st: Any) -> tuple[int, int, dict[str, int]]:
        window: SlidingWindow | None = st.window
        if window is None or not window.times:
            return 0, 0, {}
        return window.times[0], window.times[-1], window.tag_counts()

    def reason(
        self, rule: Any, value: float, threshold: float, span: str, places: str, event: CallEvent
    ) -> str:
        return (
            f"{fmt(value)} calls to destinations new to this line in {span} {places}, "
            f"limit {fmt(threshold)}"
        )


KIND = NewDestinationKind()
