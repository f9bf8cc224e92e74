"""What every rule kind provides to the engine.

A kind turns one matching event into a number (its metric's current value for
the line) that the engine compares with the rule's thresholds; the engine owns
thresholds, alert episodes, blocks, cooldowns and signal building, the kind
owns its per-line state and what its number means.
"""

from __future__ import annotations

from typing import Any

from tollguard.engine.events import CallEvent

# `observe` returns this when the event cannot change a decision.
NO_DECISION = -1.0


class Kind:
    name = ""
    metric = "calls"

    def line_level(self, rule: Any) -> bool:
        """True if the value describes the whole line, so an alert episode ends
        when it drops below the warning threshold. Per-key values (one number,
        one call) end episodes after a quiet window instead."""
        return True

    def new_state(self, rule: Any) -> Any:
        raise NotImplementedError

    def observe(self, rule: Any, st: Any, event: CallEvent, tag: str, line: Any) -> float:
        """Record one matching event; the value to judge, or NO_DECISION."""
        raise NotImplementedError

    def evidence(self, rule: Any, st: Any) -> tuple[int, int, dict[str, int]]:
        """(first event ts, last event ts, destination tag -> calls) behind the value."""
        raise NotImplementedError

    def reason(
        self, rule: Any, value: float, threshold: float, span: str, places: str, event: CallEvent
    ) -> str:
        """One sentence; `places` is 'to X' or '(X 3, Y 2)' or ''."""
        raise NotImplementedError


def fmt(value: float) -> str:
    """Numbers in reasons: whole numbers without a decimal point."""
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}"
