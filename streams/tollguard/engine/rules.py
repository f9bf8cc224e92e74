"""Rule definitions the engine evaluates.

Rules are plain frozen data: a rule pack loader builds them, the engine reads
them. Keeping them free of behaviour beyond matching lets the same pack run in
the worker, the backtester and the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tollguard.engine.events import SETUP, CallEvent
from tollguard.signals.model import ENFORCE

SCOPE_KINDS: Final = ("international", "destinations", "all")


@dataclass(frozen=True, slots=True)
class CountRule:
    """Matching calls per line in a sliding event-time window.

    `warning` raises an alert, `critical` a block; either may be absent.
    """

    id: str
    window_ms: int
    warning: int | None = None
    critical: int | None = None
    ttl_ms: int | None = 3_600_000
    mode: str = ENFORCE
    international_only: bool = True
    prefixes: tuple[str, ...] = ()
    exclude_prefixes: tuple[str, ...] = ()
    block_scope: str = "international"
    description: str = ""

    @property
    def cap(self) -> int:
        """How many call times a window must remember to decide both thresholds."""
        return max(self.warning or 0, self.critical or 0)

    def matches(self, event: CallEvent) -> bool:
        if event.type != SETUP:
            return False
        if self.international_only and not event.international:
            return False
        e164 = event.e164 or ""
        if self.prefixes and not e164.startswith(self.prefixes):
            return False
        return not (self.exclude_prefixes and e164.startswith(self.exclude_prefixes))


Rule = CountRule


@dataclass(frozen=True, slots=True)
class RulePack:
    name: str
    version: str
    dial_plan: str
    rules: tuple[Rule, ...]

    @property
    def max_window_ms(self) -> int:
        return max((r.window_ms for r in self.rules), default=0)
