"""`spend`: estimated cost of matching calls per line in a sliding window.

A setup is priced at its destination's per-minute rate (longest prefix in the
rate table) times `default_call_s`, because a flood must be stopped before its
calls end. A release carrying `duration_s` replaces that estimate with the
exact cost (the estimate scaled to the real duration, found by call id, so the
release needs no callee), and the total becomes exact as calls end. Amounts are integers of
one millionth of the currency, so the window total never drifts.

Seed case: ~14,000 calls of ~30 s to Sierra Leone at ~0.60/min is ~4,200 in
four days, ~44 an hour: a spend limit of a few per hour catches it in
minutes, though it is only ~2.4 calls a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollguard.engine.events import RELEASE, CallEvent
from tollguard.engine.kinds.base import NO_DECISION, Kind, fmt
from tollguard.engine.windows import SumWindow
from tollguard.numbering.rates import MICRO, RateTable


@dataclass(frozen=True, slots=True)
class SpendParams:
    rates: RateTable
    default_call_s: float = 60.0
    currency: str = "USD"


class SpendKind(Kind):
    name = "spend"
    metric = "spend"

    def new_state(self, rule: Any) -> SumWindow:
        return SumWindow()

    def observe(self, rule: Any, st: Any, event: CallEvent, tag: str, line: Any) -> float:
        window: SumWindow = st
        params: SpendParams = rule.params
        if event.type == RELEASE:
            # The setup's estimate was rate x default_call_s; scaling it to the
            # real duration needs no callee on the release.
            if event.duration_s is None:
                return NO_DECISION
            factor = event.duration_s / params.default_call_s
            total = window.rescale(
                event.call_id, factor, line.max_ts, rule.window_ms, rule.max_events
            )
            return NO_DECISION if total is None else total / MICRO
        e164 = event.e164
        if e164 is None:
            return NO_DECISION
        rate = params.rates.per_minute(e164)
        amount = round(rate * params.default_call_s / 60)
        total = window.add(
            event.ts_ms, amount, event.call_id, tag, line.max_ts, rule.window_ms, rule.max_events
        )
        return total / MICRO

    def evidence(self, rule: Any, st: Any) -> tuple[int, int, dict[str, int]]:
        window: SumWindow = st
        return window.times[0], window.times[-1], window.tag_counts()

    def reason(
        self, rule: Any, value: float, threshold: float, span: str, places: str, event: CallEvent
    ) -> str:
        cur = rule.params.currency
        return (
            f"spend of {value:.2f} {cur} on calls {places} in {span}, limit {fmt(threshold)} {cur}"
        ).replace("  ", " ")


KIND = SpendKind()
