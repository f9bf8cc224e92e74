"""Rule definitions the engine evaluates.

Rules are plain frozen data: the rule-pack loader builds them, the engine reads
them. What every rule shares lives here (thresholds, scope, destination filter,
allow-lists, schedule, overrides, block TTL, cooldown, mode); what a rule kind
does with a matching event lives in `tollguard.engine.kinds.<kind>`.

Override precedence (most specific wins, decided per event):

1. a per-line override (`overrides.lines[line_id]`),
2. else a per-tenant override (`overrides.tenants[tenant]`),
3. else the rule's own `warning` / `critical` / `mode`.

A field an override leaves out comes from the rule itself, not from the next
override down. `enabled: false` in an override switches the rule off there.
Allow-lists and scope are checked before any of this: an allow-listed line or
number is never counted by the rule, whatever the overrides say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from tollguard.engine.events import ANSWER, RELEASE, SETUP, CallEvent
from tollguard.engine.kinds import KINDS, Kind
from tollguard.engine.schedule import Schedule
from tollguard.signals.model import ENFORCE

SCOPE_KINDS: Final = ("international", "destinations", "all")

COUNT: Final = "count"
SPEND: Final = "spend"
DISTINCT: Final = "distinct"
REPEAT: Final = "repeat"
NEW_DESTINATION: Final = "new_destination"
CONCURRENT: Final = "concurrent"
LONG_CALL: Final = "long_call"
RULE_KINDS: Final = (COUNT, SPEND, DISTINCT, REPEAT, NEW_DESTINATION, CONCURRENT, LONG_CALL)

# Which event types each kind consumes.
KIND_EVENTS: Final[dict[str, frozenset[str]]] = {
    COUNT: frozenset({SETUP}),
    SPEND: frozenset({SETUP, RELEASE}),
    DISTINCT: frozenset({SETUP}),
    REPEAT: frozenset({SETUP}),
    NEW_DESTINATION: frozenset({SETUP}),
    CONCURRENT: frozenset({ANSWER, RELEASE}),
    LONG_CALL: frozenset({ANSWER, RELEASE}),
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Thresholds and mode in force for one line (the rule's own, or an override)."""

    warning: float | None = None
    critical: float | None = None
    mode: str = ENFORCE
    enabled: bool = True
    # The lowest threshold set: below it a value can only end an alert episode.
    low: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        set_ = [t for t in (self.warning, self.critical) if t is not None]
        object.__setattr__(self, "low", min(set_) if set_ else math.inf)

    @property
    def top(self) -> float:
        return max(self.warning or 0, self.critical or 0)


@dataclass(frozen=True, slots=True)
class Match:
    """Destination filter: which dialled numbers a rule looks at."""

    international_only: bool = True
    prefixes: tuple[str, ...] = ()
    exclude_prefixes: tuple[str, ...] = ()

    def accepts(self, event: CallEvent) -> bool:
        if self.international_only and not event.international:
            return False
        e164 = event.e164 or ""
        if self.prefixes and not e164.startswith(self.prefixes):
            return False
        return not (self.exclude_prefixes and e164.startswith(self.exclude_prefixes))


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kind: str
    window_ms: int
    limits: Limits
    ttl_ms: int | None = 3_600_000
    cooldown_ms: int = 0
    block_scope: str = "international"
    description: str = ""
    match: Match = field(default_factory=Match)
    schedule: Schedule | None = None
    tenants: frozenset[str] | None = None
    lines: frozenset[str] | None = None
    allow_lines: frozenset[str] = frozenset()
    allow_numbers: tuple[str, ...] = ()
    line_limits: dict[str, Limits] = field(default_factory=dict)
    tenant_limits: dict[str, Limits] = field(default_factory=dict)
    # Kind-specific settings (a frozen dataclass from the kind's module), or None.
    params: Any = None
    # Most events a window keeps for the kinds whose value is not a plain count.
    max_events: int = 4096
    # True when only the destination's international flag can exclude a call
    # (no scope, allow-list, prefixes or schedule): the engine's fast path.
    simple: bool = field(init=False, compare=False, repr=False)
    has_overrides: bool = field(init=False, compare=False, repr=False)
    # How many call times a count window must remember to decide every threshold.
    cap: int = field(init=False, compare=False, repr=False)
    # The kind's implementation (tollguard.engine.kinds), looked up once.
    impl: Kind = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        m = self.match
        simple = not (
            self.lines is not None
            or self.tenants is not None
            or self.allow_lines
            or self.allow_numbers
            or m.prefixes
            or m.exclude_prefixes
            or self.schedule is not None
        )
        object.__setattr__(self, "simple", simple)
        object.__setattr__(self, "has_overrides", bool(self.line_limits or self.tenant_limits))
        top = max(
            [self.limits.top]
            + [lim.top for lim in self.line_limits.values()]
            + [lim.top for lim in self.tenant_limits.values()]
        )
        object.__setattr__(self, "cap", max(1, math.ceil(top)))
        object.__setattr__(self, "impl", KINDS[self.kind])

    @property
    def warning(self) -> float | None:
        return self.limits.warning

    @property
    def critical(self) -> float | None:
        return self.limits.critical

    @property
    def mode(self) -> str:
        return self.limits.mode

    @property
    def international_only(self) -> bool:
        return self.match.international_only

    def limits_for(self, line_id: str, tenant: str | None) -> Limits:
        """Override precedence: line, then tenant, then the rule (module docstring)."""
        if self.line_limits:
            found = self.line_limits.get(line_id)
            if found is not None:
                return found
        if self.tenant_limits and tenant is not None:
            found = self.tenant_limits.get(tenant)
            if found is not None:
                return found
        return self.limits

    def applies(self, event: CallEvent, tenant: str | None) -> bool:
        """Scope, allow-lists, destination filter and schedule; not the event type."""
        if self.lines is not None and event.line_id not in self.lines:
            return False
        if self.tenants is not None and tenant not in self.tenants:
            return False
        if self.allow_lines and event.line_id in self.allow_lines:
            return False
        if event.e164 is not None:
            if not self.match.accepts(event):
                return False
            if self.allow_numbers and event.e164.startswith(self.allow_numbers):
                return False
        elif self.match.prefixes or self.match.international_only:
            return False  # a filtered rule cannot judge a call it cannot place
        schedule = self.schedule
        return schedule is None or schedule.active(event.ts_ms)

    def matches(self, event: CallEvent) -> bool:
        """Type, scope and filter (kept for callers that have no line state)."""
        return event.type in KIND_EVENTS[self.kind] and self.applies(event, event.tenant)


def CountRule(
    id: str,
    window_ms: int,
    warning: int | None = None,
    critical: int | None = None,
    ttl_ms: int | None = 3_600_000,
    mode: str = ENFORCE,
    international_only: bool = True,
    prefixes: tuple[str, ...] = (),
    exclude_prefixes: tuple[str, ...] = (),
    block_scope: str = "international",
    description: str = "",
) -> Rule:
    """A `count` rule: matching calls per line in a sliding event-time window."""
    return Rule(
        id=id,
        kind=COUNT,
        window_ms=window_ms,
        limits=Limits(warning, critical, mode),
        ttl_ms=ttl_ms,
        block_scope=block_scope,
        description=description,
        match=Match(international_only, prefixes, exclude_prefixes),
    )


@dataclass(frozen=True, slots=True)
class RulePack:
    name: str
    version: str
    dial_plan: str
    rules: tuple[Rule, ...]
    # Rules by event type, for international calls (all of them) and for the
    # rest (only rules that also look at domestic calls): most traffic is
    # domestic, and most rules never need to see it.
    by_type: dict[str, tuple[Rule, ...]] = field(init=False, compare=False, repr=False)
    by_type_domestic: dict[str, tuple[Rule, ...]] = field(init=False, compare=False, repr=False)
    # Whether setups must be remembered for answers without a callee (any call / domestic too).
    needs_call_legs: bool = field(init=False, compare=False, repr=False)
    needs_domestic_legs: bool = field(init=False, compare=False, repr=False)
    # Event types no rule sees for a domestic call and that set no call leg:
    # most events are such, and the engine admits them and stops.
    quiet_domestic: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        types = (SETUP, ANSWER, RELEASE)
        by_type = {t: tuple(r for r in self.rules if t in KIND_EVENTS[r.kind]) for t in types}
        domestic = {
            t: tuple(r for r in by_type[t] if not r.match.international_only) for t in types
        }
        object.__setattr__(self, "by_type", by_type)
        object.__setattr__(self, "by_type_domestic", domestic)
        object.__setattr__(self, "needs_call_legs", bool(by_type[ANSWER]))
        object.__setattr__(self, "needs_domestic_legs", bool(domestic[ANSWER]))
        quiet = {t for t in types if not domestic[t]}
        if domestic[ANSWER]:
            quiet.discard(SETUP)
        object.__setattr__(self, "quiet_domestic", frozenset(quiet))

    @property
    def max_window_ms(self) -> int:
        return max((r.window_ms for r in self.rules), default=0)
