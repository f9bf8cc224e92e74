"""`repeat`: the same number dialled again and again in a window.

Hacked PBXs and dialler scripts hammer one revenue-share number; people call
a number a few times a day. The value is the count for the number just dialled.
"""

from __future__ import annotations

from typing import Any

from tollguard.engine.events import CallEvent
from tollguard.engine.kinds.base import NO_DECISION, Kind, fmt
from tollguard.engine.windows import KeyedWindow


class RepeatKind(Kind):
    name = "repeat"

    def line_level(self, rule: Any) -> bool:
        return False

    def new_state(self, rule: Any) -> KeyedWindow:
        return KeyedWindow()

    def observe(self, rule: Any, st: Any, event: CallEvent, tag: str, line: Any) -> float:
        window: KeyedWindow = st
        e164 = event.e164
        if e164 is None:
            return NO_DECISION
        window.add(event.ts_ms, e164, line.max_ts, rule.window_ms, rule.max_events)
        return window.counts.get(e164, 0)

    def evidence(self, rule: Any, st: Any) -> tuple[int, int, dict[str, int]]:
        window: KeyedWindow = st
        return window.times[0], window.times[-1], {}

    def reason(
        self, rule: Any, value: float, threshold: float, span: str, places: str, event: CallEvent
    ) -> str:
        return (
            f"{fmt(value)} calls to the same number {event.e164} in {span}, limit {fmt(threshold)}"
        )


KIND = RepeatKind()
