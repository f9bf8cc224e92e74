"""`long_call`: one call still up past a limit (thresholds are durations in seconds).

Revenue-share fraud pays per minute, so some attacks hold few very long calls
instead of many short ones. The engine schedules a check at answer time plus
each threshold, on the event-time watermark of its shard; if the call is still
live then, the check decides. A release that arrives with the call already
past a threshold (its `duration_s`, or release minus answer time) decides
too. Calls never released are dropped after `release_timeout` (`live.py`).
"""

from __future__ import annotations

from typing import Any

from tollguard.engine.events import ANSWER, CallEvent
from tollguard.engine.kinds.base import NO_DECISION, Kind
from tollguard.engine.kinds.live import LiveCalls, LiveParams


def format_seconds(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min" if s % 3600 >= 60 else f"{s // 3600} h"
    if s >= 60:
        return f"{s // 60} min"
    return f"{s} s"


class LongCallKind(Kind):
    name = "long_call"
    metric = "call_seconds"

    def line_level(self, rule: Any) -> bool:
        return False

    def new_state(self, rule: Any) -> LiveCalls:
        return LiveCalls(tags={})

    def observe(self, rule: Any, st: Any, event: CallEvent, tag: str, line: Any) -> float:
        live: LiveCalls = st
        params: LiveParams = rule.params
        if event.type == ANSWER:
            live.answer(event.call_id, event.ts_ms, params.release_timeout_ms, tag)
            return NO_DECISION  # the engine schedules the checks
        answered = live.release(event.call_id)
        if answered is None and event.e164 is None:
            return NO_DECISION  # a release of a call this rule never saw answered
        if event.duration_s is not None:
            return event.duration_s
        if answered is None:
            return NO_DECISION
        return (event.ts_ms - answered) / 1000

    def evidence(self, rule: Any, st: Any) -> tuple[int, int, dict[str, int]]:
        live: LiveCalls = st
        return live.evidence()

    def reason(
        self, rule: Any, value: float, threshold: float, span: str, places: str, event: CallEvent
    ) -> str:
        return (
            f"a call {places} up for {format_seconds(value)}, limit {format_seconds(threshold)}"
        ).replace("  ", " ")


KIND = LongCallKind()
