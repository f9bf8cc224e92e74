"""`count`: matching call attempts per line in a sliding event-time window.

The window keeps only the newest `cap` call times (the highest threshold any
override asks for): at the cap the count means "cap or more", which decides
every threshold exactly. See `tollguard.engine.windows.SlidingWindow`.
"""

from __future__ import annotations

from typing import Any

from tollguard.engine.events import CallEvent
from tollguard.engine.kinds.base import Kind, fmt
from tollguard.engine.windows import SlidingWindow


class CountKind(Kind):
    name = "count"
    metric = "calls"

    def new_state(self, rule: Any) -> SlidingWindow:
        return SlidingWindow()

    def observe(self, rule: Any, st: Any, event: CallEvent, tag: str, line: Any) -> float:
        window: SlidingWindow = st
        return window.add(event.ts_ms, tag, line.max_ts, rule.window_ms, rule.cap)

    def evidence(self, rule: Any, st: Any) -> tuple[int, int, dict[str, int]]:
        window: SlidingWindow = st
        return window.times[0], window.times[-1], window.tag_counts()

    def reason(
        self, rule: Any, value: float, threshold: float, span: str, places: str, event: CallEvent
    ) -> str:
        if places.startswith("to "):
            return f"{fmt(value)} calls {places} in {span}, limit {fmt(threshold)}"
        what = "international calls" if rule.match.international_only else "calls"
        return f"{fmt(value)} {what} in {span} {places}, limit {fmt(threshold)}"


KIND = CountKind()
