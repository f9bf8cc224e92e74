"""`concurrent`: calls up at the same time on one line.

A hacked PBX opens as many parallel channels as the trunk allows (one case
reached 220 call-minutes per minute); an office has a few. The value is the
number of live calls (answered, not yet released, not timed out) when a call
is answered. See `live.py` for the release timeout.
"""

from __future__ import annotations

from typing import Any

from tollguard.engine.events import ANSWER, CallEvent
from tollguard.engine.kinds.base import Kind, fmt
from tollguard.engine.kinds.live import LiveCalls, LiveParams


class ConcurrentKind(Kind):
    name = "concurrent"
    metric = "live_calls"

    def new_state(self, rule: Any) -> LiveCalls:
        return LiveCalls()

    def observe(self, rule: Any, st: Any, event: CallEvent, tag: str, line: Any) -> float:
        live: LiveCalls = st
        params: LiveParams = rule.params
        if event.type == ANSWER:
            live.answer(event.call_id, event.ts_ms, params.release_timeout_ms)
        else:
            live.release(event.call_id)
        return len(live.calls)

    def evidence(self, rule: Any, st: Any) -> tuple[int, int, dict[str, int]]:
        live: LiveCalls = st
        return live.evidence()

    def reason(
        self, rule: Any, value: float, threshold: float, span: str, places: str, event: CallEvent
    ) -> str:
        return f"{fmt(value)} calls up at once, limit {fmt(threshold)}"


KIND = ConcurrentKind()
