"""The detection engine: per-line rule state, decisions and block lifecycle.

One engine holds the state of one shard of lines (in the worker: one Kafka
partition), so state moves with partitions. It never reads a clock: time is
the event time of what it is fed, plus the `now` its caller passes to
`expire`. That keeps replays, backtests and tests deterministic.

What a rule kind measures lives in `tollguard.engine.kinds`; what happens
when a value crosses a threshold is decided here, the same for every kind:

* `warning` reached: one `alert` per line, rule and episode. An episode
  lasts while the value keeps reaching warning and ends once it has stayed
  below for a whole window (plus the rule's cooldown), for every kind.
* `critical` reached: one `block` per line and episode, whichever rule gets
  there first (a blocked line is not blocked again by another rule), with the
  rule's TTL. Shadow-mode rules have their own block slot, so a shadow rule
  never stops an enforcing one.
* After a block expires the line is in cooldown for the blocking rule's
  `cooldown`: no new block or alert until it is over.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from sys import intern
from typing import Any

from msgspec import Struct
from msgspec import field as struct_field

from tollguard.engine.dedup import RecentIds
from tollguard.engine.events import ANSWER, RELEASE, SETUP, CallEvent
from tollguard.engine.kinds import KINDS, NO_DECISION, Kind
from tollguard.engine.kinds.live import LiveCalls
from tollguard.engine.kinds.new_destination import NewDestinationState
from tollguard.engine.rules import DISTINCT, LONG_CALL, Limits, Rule, RulePack
from tollguard.engine.windows import KeyedWindow, SlidingWindow, SumWindow
from tollguard.numbering import Destination, DestinationTable
from tollguard.signals.model import (
    ALERT,
    BLOCK,
    CRITICAL,
    SHADOW,
    SOURCE_EXPIRY,
    UNBLOCK,
    WARNING,
    ControlSignal,
    Evidence,
    signal_id,
)

UNKNOWN_DEST = "unknown"
# Why `process` refuses an event.
LATE = "late"
DUPLICATE = "duplicate"
SAMPLE_CALLEES = 5
# Setups remembered per line so an answer without a callee can be matched to its
# destination (only when the pack has rules that need it). Answers follow their
# setup within seconds, so a leg is kept for LEG_MAX_AGE_MS at most. Releases
# without a callee need no destination: rules that track a call (spend,
# concurrent, long_call) find it by call id in their own state.
MAX_LEGS = 256
LEG_MAX_AGE_MS = 300_000
# A line's last-seen time is written to the changelog when it moves into a new
# granule (or with any other change), not on every event: an ordinary line
# calling 20 times an hour then costs one write an hour, not twenty. After a
# restore it may be this much behind until the line's next event: an idle line
# can be forgotten this much early (out of TOLLGUARD_IDLE_EVICT_S, 14 days by
# default), and the lateness check is that much more lenient for its first event.
LAST_SEEN_GRANULE_MS = 3_600_000

# What a line remembers of a recent setup: (time, e164, destination, international).
Leg = tuple[int, str | None, Destination | None, bool]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    # Events older than a line's newest event by more than this are "late".
    lateness_ms: int = 60_000


@dataclass(slots=True)
class OpenBlock:
    signal: ControlSignal
    expires_at: int | None
    cooldown_ms: int = 0


# What a rule kind keeps per line. The changelog decodes exactly these, by
# class name: a new kind's state class must be added here.
RuleState = SlidingWindow | KeyedWindow | SumWindow | LiveCalls | NewDestinationState


class LineRules(Struct, array_like=True, gc=False):
    """What rules remember about a line: only lines that a rule has seen have one.

    Most lines only ever make calls that no rule keeps state for, so everything
    here stays off `LineState`: a line with no rule state costs one small object.
    """

    # rule id -> that rule kind's state for this line
    states: dict[str, RuleState] = struct_field(default_factory=dict)
    # rule id -> latest event time its value was at or above warning
    alerting: dict[str, int] | None = None
    block: OpenBlock | None = None
    shadow_block: OpenBlock | None = None
    cooldown_until: int = 0
    shadow_cooldown_until: int = 0
    recent: tuple[str, ...] | None = None
    # call id -> (setup time, e164, destination, international) of recent setups
    legs: dict[str, Leg] | None = None


class LineState(Struct, array_like=True, gc=False):
    """Everything the engine remembers about one line.

    A msgspec Struct, like all line state: the changelog codec encodes it in
    C, and without a GC header it costs 48 bytes a line.
    """

    tenant: str | None
    first_ts: int
    max_ts: int
    rules: LineRules | None = None

    @property
    def states(self) -> dict[str, Any]:
        return self.rules.states if self.rules is not None else {}

    @property
    def legs(self) -> dict[str, Leg] | None:
        return self.rules.legs if self.rules is not None else None


@dataclass(slots=True)
class EngineStats:
    late: int = 0
    duplicates: int = 0
    processed: int = 0


def format_span(ms: int) -> str:
    seconds = ms // 1000
    if seconds and seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _state_key(rule: Rule) -> tuple[str, object]:
    """Rules whose id and key stay the same across packs keep their per-line state."""
    if rule.kind == DISTINCT:
        return rule.kind, (rule.params.of, rule.params.range_digits)
    return rule.kind, None


@dataclass(slots=True)
class Engine:
    pack: RulePack
    config: EngineConfig = field(default_factory=EngineConfig)
    lines: dict[str, LineState] = field(default_factory=dict)
    stats: EngineStats = field(default_factory=EngineStats)
    max_ts: int = 0
    # Lines whose durable state changed since the caller last took this set.
    dirty: set[str] = field(default_factory=set)
    _expiries: list[tuple[int, str, str]] = field(default_factory=list)
    # long-call checks: (due event time, line id, rule id, call id)
    _due: list[tuple[int, str, str, str]] = field(default_factory=list)
    _dests: dict[str, Destination] = field(default_factory=dict)
    _tags: dict[str, str] = field(default_factory=dict)
    _dedup: RecentIds = field(init=False)
    # Lines with an enforced block, so the gauge costs nothing per line.
    _blocked: set[str] = field(default_factory=set)
    # Names destinations in reasons when the engine has not seen them itself.
    destinations: DestinationTable | None = None

    def __post_init__(self) -> None:
        self._dedup = RecentIds(self.config.lateness_ms)

    def set_pack(self, pack: RulePack) -> None:
        """Swap rules in place; rules that keep their id and kind keep their state."""
        old = {r.id: _state_key(r) for r in self.pack.rules}
        kept = {r.id for r in pack.rules if old.get(r.id) == _state_key(r)}
        for line_id, state in self.lines.items():
            rules = state.rules
            if rules is None:
                continue
            states = rules.states
            for rule_id in [r for r in states if r not in kept]:
                del states[rule_id]
                self.dirty.add(line_id)
            if rules.alerting:
                for rule_id in [r for r in rules.alerting if r not in kept]:
                    del rules.alerting[rule_id]
        self.pack = pack

    def process(self, event: CallEvent, out: list[ControlSignal]) -> str | None:
        """Feed one event; append any signals to `out`.

        Returns a rejection reason ("late") or "duplicate", else None.
        """
        refused = self.process_batch((event,), out)
        return refused[0][1] if refused else None

    def process_batch(
        self, events: Iterable[CallEvent], out: list[ControlSignal]
    ) -> list[tuple[int, str]]:
        """Feed events in order; append any signals to `out`.

        Returns the positions of the events refused, each with its reason
        ("late" or "duplicate"). Marks a line dirty when what a checkpoint
        would write changed: always when a rule saw the event, but for the
        line's last-seen time only once per LAST_SEEN_GRANULE_MS, so the
        common event no rule keeps state for costs no changelog write.

        One call per batch, not per event: most events (calls at home, from
        lines without rule state) end in this loop. With the processor's
        counting in list passes, that took about 1,700 of the 29,400
        instructions an envelope's event cost (counted under callgrind).
        """
        lines = self.lines
        dirty_add = self.dirty.add
        lateness = self.config.lateness_ms
        seen = self._dedup.add
        quiet = self.pack.quiet_domestic
        due = self._due
        refused: list[tuple[int, str]] = []
        processed = 0
        # The last-seen granule an event fell in, [granule, granule_end): events
        # come mostly in time order, so two comparisons place the next, where
        # two divisions of event times cost ~550 instructions an event (callgrind).
        granule = granule_end = 0
        try:
            for index, event in enumerate(events):
                ts = event.ts_ms
                line_id = event.line_id
                state = lines.get(line_id)
                if state is None:
                    tenant = event.tenant
                    if tenant is not None:
                        tenant = intern(tenant)  # one string per tenant name, not one per line
                    state = lines[line_id] = LineState(tenant, ts, ts)
                    dirty_add(line_id)
                elif ts < state.max_ts - lateness:
                    refused.append((index, LATE))
                    continue
                if not seen(event.call_id, event.type, ts):
                    refused.append((index, DUPLICATE))
                    continue
                processed += 1
                last = state.max_ts
                if ts > last:
                    if not granule <= ts < granule_end:
                        granule = ts - ts % LAST_SEEN_GRANULE_MS
                        granule_end = granule + LAST_SEEN_GRANULE_MS
                    if last < granule:  # `last` is in an earlier granule than `ts`
                        dirty_add(line_id)
                    state.max_ts = ts
                    if ts > self.max_ts:
                        self.max_ts = ts
                elif ts < state.first_ts:
                    state.first_ts = ts
                    dirty_add(line_id)
                elif ts > self.max_ts:  # a new line's first event
                    self.max_ts = ts
                tenant = event.tenant
                if tenant is not None and tenant != state.tenant:
                    state.tenant = intern(tenant)
                    dirty_add(line_id)
                etype = event.type
                # Most events stop at admission: a domestic setup needs only a
                # rule or a call leg (none if quiet); a domestic answer or
                # release may still close a leg its line has.
                if (
                    event.international
                    or etype not in quiet
                    or (etype != SETUP and state.rules is not None)
                ):
                    self._apply(event, state, out)
                if due and due[0][0] <= self.max_ts:
                    self._run_due(out)
        finally:
            stats = self.stats
            stats.processed += processed
            if refused:
                stats.late += sum(1 for _, why in refused if why == LATE)
                stats.duplicates += sum(1 for _, why in refused if why == DUPLICATE)
        return refused

    def _apply(self, event: CallEvent, state: LineState, out: list[ControlSignal]) -> None:
        """An admitted event's call legs and rules (the caller runs due long-call checks)."""
        ts = event.ts_ms
        line_id = event.line_id
        pack = self.pack
        etype = event.type
        line_rules = state.rules
        if etype == SETUP:
            if event.e164 is not None and (
                pack.needs_domestic_legs or (event.international and pack.needs_call_legs)
            ):
                if line_rules is None:
                    line_rules = state.rules = LineRules()
                legs = line_rules.legs
                if legs is None:
                    legs = line_rules.legs = {}
                legs[event.call_id] = (ts, event.e164, event.dest, event.international)
                oldest_ok = ts - LEG_MAX_AGE_MS
                while legs:
                    first_id, first = next(iter(legs.items()))
                    if len(legs) <= MAX_LEGS and first[0] >= oldest_ok:
                        break
                    del legs[first_id]
                self.dirty.add(line_id)
        elif line_rules is not None and line_rules.legs is not None:
            legs = line_rules.legs
            leg = legs.pop(event.call_id, None) if etype == RELEASE else legs.get(event.call_id)
            if leg is not None:
                self.dirty.add(line_id)
                if event.e164 is None:
                    _, event.e164, event.dest, event.international = leg
        # A release that cannot be placed goes to every rule that may hold its
        # call (by id); the kinds ignore call ids they do not know.
        by_id = etype == RELEASE and event.e164 is None
        if by_id:
            rules = pack.by_type[RELEASE] if line_rules is not None and line_rules.states else ()
        else:
            rules = pack.by_type[etype] if event.international else pack.by_type_domestic[etype]
        if not rules:
            return
        matched = False
        tenant = state.tenant
        tag = self._tag(event)
        for rule in rules:
            if by_id:
                if line_rules is None or rule.id not in line_rules.states:
                    continue
            elif rule.simple:
                if event.e164 is None and rule.match.international_only:
                    continue
            elif not rule.applies(event, tenant):
                continue
            limits = rule.limits_for(line_id, tenant) if rule.has_overrides else rule.limits
            if not limits.enabled:
                continue
            matched = True
            kind = rule.impl
            if line_rules is None:
                line_rules = state.rules = LineRules()
            states = line_rules.states
            st = states.get(rule.id)
            if st is None:
                st = states[rule.id] = kind.new_state(rule)
            value = kind.observe(rule, st, event, tag, state)
            if value >= limits.low or (value != NO_DECISION and line_rules.alerting):
                self._decide(rule, limits, kind, st, state, event, tag, value, out)
            elif rule.kind == LONG_CALL and etype == ANSWER:
                self._schedule_long_call(rule, limits, line_id, event.call_id, event.ts_ms)
        if matched:
            self.dirty.add(line_id)
            if etype == SETUP and event.e164 is not None and line_rules is not None:
                recent = (line_rules.recent or ()) + (event.e164,)
                line_rules.recent = recent[-SAMPLE_CALLEES:]

    def _tag(self, event: CallEvent) -> str:
        dest = event.dest
        if dest is None:
            return UNKNOWN_DEST
        tag = self._tags.get(dest.prefix)
        if tag is None:
            tag = self._tags[dest.prefix] = "+" + dest.prefix
            self._dests[tag] = dest
        return tag

    def _schedule_long_call(
        self, rule: Rule, limits: Limits, line_id: str, call_id: str, answered_ms: int
    ) -> None:
        """Check at answer time plus each threshold whether the call is still up."""
        for threshold in (limits.warning, limits.critical):
            if threshold is not None:
                due = answered_ms + int(threshold * 1000)
                heapq.heappush(self._due, (due, line_id, rule.id, call_id))

    def _run_due(self, out: list[ControlSignal]) -> None:
        """Long-call checks whose time has come on this shard's event-time watermark."""
        due_heap = self._due
        now = self.max_ts
        while due_heap and due_heap[0][0] <= now:
            due, line_id, rule_id, call_id = heapq.heappop(due_heap)
            state = self.lines.get(line_id)
            rule = next((r for r in self.pack.rules if r.id == rule_id), None)
            if state is None or rule is None or rule.kind != LONG_CALL:
                continue
            live: Any = state.states.get(rule_id)
            answered = live.calls.get(call_id) if live is not None else None
            if answered is None:
                continue
            tag = live.tags.get(call_id, "") if live.tags is not None else ""
            probe = CallEvent(
                type=ANSWER,
                call_id=call_id,
                ts_ms=due,
                line_id=line_id,
                tenant=state.tenant,
                dest=self._dests.get(tag),
            )
            limits = rule.limits_for(line_id, state.tenant)
            value = (due - answered) / 1000
            self._decide(
                rule, limits, KINDS[LONG_CALL], live, state, probe, self._tag(probe), value, out
            )

    def _decide(
        self,
        rule: Rule,
        limits: Limits,
        kind: Kind,
        st: Any,
        state: LineState,
        event: CallEvent,
        tag: str,
        value: float,
        out: list[ControlSignal],
    ) -> None:
        ts = event.ts_ms
        shadow = limits.mode == SHADOW
        line_rules = state.rules
        assert line_rules is not None  # a rule has state on this line
        cooldown_until = line_rules.shadow_cooldown_until if shadow else line_rules.cooldown_until
        critical = limits.critical
        if critical is not None and value >= critical:
            slot = line_rules.shadow_block if shadow else line_rules.block
            if slot is None and ts >= cooldown_until:
                self._block(rule, limits, kind, st, state, event, tag, value, out)
            return
        warning = limits.warning
        if warning is None or value < warning:
            return
        alerting = line_rules.alerting
        prev = alerting.get(rule.id) if alerting is not None else None
        if (
            alerting is not None
            and prev is not None
            and ts < prev + rule.window_ms + rule.cooldown_ms
        ):
            # Still the same episode: the value was at warning less than a window
            # ago. Remember it still is, so a value hovering at the threshold
            # (spend corrected by releases, counts sliding in and out) cannot
            # raise an alert per crossing.
            if ts > prev:
                alerting[rule.id] = ts
            return
        if ts < cooldown_until:
            return
        if alerting is None:
            alerting = line_rules.alerting = {}
        alerting[rule.id] = ts
        out.append(self._signal(ALERT, WARNING, rule, limits, kind, st, state, event, tag, value))

    def _block(
        self,
        rule: Rule,
        limits: Limits,
        kind: Kind,
        st: Any,
        state: LineState,
        event: CallEvent,
        tag: str,
        value: float,
        out: list[ControlSignal],
    ) -> None:
        signal = self._signal(BLOCK, CRITICAL, rule, limits, kind, st, state, event, tag, value)
        block = OpenBlock(signal, signal.expires_at, rule.cooldown_ms)
        line_rules = state.rules
        assert line_rules is not None
        if limits.mode == SHADOW:
            line_rules.shadow_block = block
        else:
            line_rules.block = block
            self._blocked.add(event.line_id)
        if block.expires_at is not None:
            heapq.heappush(self._expiries, (block.expires_at, event.line_id, signal.signal_id))
        out.append(signal)

    def _signal(
        self,
        action: str,
        severity: str,
        rule: Rule,
        limits: Limits,
        kind: Kind,
        st: Any,
        state: LineState,
        event: CallEvent,
        tag: str,
        value: float,
    ) -> ControlSignal:
        threshold = limits.critical if severity == CRITICAL else limits.warning
        assert threshold is not None
        first_ts, last_ts, by_dest = kind.evidence(rule, st)
        if not by_dest and not kind.line_level(rule):
            by_dest = {tag: max(1, int(value)) if kind.metric == "calls" else 1}
        if not first_ts:
            first_ts = last_ts = event.ts_ms
        expires = None
        if action == BLOCK and rule.ttl_ms is not None:
            expires = event.ts_ms + rule.ttl_ms
        ranked = sorted(by_dest.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(ranked) == 1:
            places = "to " + self._label(ranked[0][0])
        elif ranked:
            places = "(" + ", ".join(f"{self._label(t)} {n}" for t, n in ranked[:3]) + ")"
        else:
            places = ""
        span = format_span(rule.window_ms)
        recent = state.rules.recent if state.rules is not None else None
        sample = tuple(recent or ())[-(SAMPLE_CALLEES - 1) :]
        if event.e164 and event.type == SETUP:
            sample += (event.e164,)
        return ControlSignal(
            signal_id=signal_id(
                action, self.pack.version, rule.id, event.line_id, event.call_id, event.ts_ms
            ),
            action=action,
            line_id=event.line_id,
            tenant=state.tenant,
            scope=self._scope(rule, by_dest),
            severity=severity,
            rule_id=rule.id,
            rules_version=self.pack.version,
            reason=kind.reason(rule, value, threshold, span, places, event),
            event_ts=event.ts_ms,
            expires_at=expires,
            mode=limits.mode,
            evidence=Evidence(
                metric=kind.metric,
                value=value,
                threshold=threshold,
                window_s=rule.window_ms // 1000,
                first_event_ts=first_ts,
                last_event_ts=last_ts,
                sample_callees=sample[-SAMPLE_CALLEES:],
                destinations=tuple(ranked),
            ),
        )

    def _scope(self, rule: Rule, by_dest: dict[str, int]) -> dict[str, object]:
        if rule.block_scope == "destinations":
            prefixes = sorted(t for t in by_dest if t != UNKNOWN_DEST)
            if prefixes:
                return {"kind": "destinations", "prefixes": prefixes}
            return {"kind": "international"}
        return {"kind": rule.block_scope}

    def _label(self, tag: str) -> str:
        dest = self._dests.get(tag)
        if dest is None and self.destinations is not None and tag != UNKNOWN_DEST:
            dest = self.destinations.lookup(tag)  # a tag restored from the changelog
        return dest.label if dest is not None else "unknown destinations"

    def expire(self, now_ms: int) -> list[ControlSignal]:
        """Lift blocks whose TTL has passed at `now_ms`; returns the unblock signals."""
        out: list[ControlSignal] = []
        heap = self._expiries
        while heap and heap[0][0] <= now_ms:
            expires_at, line_id, sid = heapq.heappop(heap)
            state = self.lines.get(line_id)
            line_rules = state.rules if state is not None else None
            if line_rules is None:
                continue
            for shadow in (False, True):
                block = line_rules.shadow_block if shadow else line_rules.block
                if block is None or block.signal.signal_id != sid:
                    continue
                if shadow:
                    line_rules.shadow_block = None
                    line_rules.shadow_cooldown_until = expires_at + block.cooldown_ms
                else:
                    line_rules.block = None
                    self._blocked.discard(line_id)
                    line_rules.cooldown_until = expires_at + block.cooldown_ms
                self.dirty.add(line_id)
                out.append(self._unblock(block.signal, expires_at))
        return out

    def _unblock(self, block: ControlSignal, at_ms: int) -> ControlSignal:
        return ControlSignal(
            signal_id=signal_id(UNBLOCK, block.signal_id),
            action=UNBLOCK,
            line_id=block.line_id,
            tenant=block.tenant,
            scope=block.scope,
            severity=block.severity,
            rule_id=block.rule_id,
            rules_version=block.rules_version,
            reason=f"block {block.signal_id[:12]} by rule {block.rule_id} expired",
            event_ts=at_ms,
            expires_at=None,
            mode=block.mode,
            source=SOURCE_EXPIRY,
        )

    def active_blocks(self) -> int:
        return len(self._blocked)

    def adopt(self, line_id: str, state: LineState) -> None:
        """Take over a line's state restored from the changelog, with its timers."""
        self.lines[line_id] = state
        if state.tenant is not None:
            state.tenant = intern(state.tenant)
        if state.max_ts > self.max_ts:
            self.max_ts = state.max_ts
        line_rules = state.rules
        if line_rules is None:
            return
        if line_rules.block is not None:
            self._blocked.add(line_id)
        for block in (line_rules.block, line_rules.shadow_block):
            if block is not None and block.expires_at is not None:
                entry = (block.expires_at, line_id, block.signal.signal_id)
                heapq.heappush(self._expiries, entry)
        for rule in self.pack.rules:
            live = line_rules.states.get(rule.id) if rule.kind == LONG_CALL else None
            if isinstance(live, LiveCalls):
                limits = rule.limits_for(line_id, state.tenant)
                for call_id, answered in live.calls.items():
                    self._schedule_long_call(rule, limits, line_id, call_id, answered)

    def evict_idle(self, before_ts: int, among: Iterable[str] | None = None) -> list[str]:
        """Forget lines (of `among`, or all) with no event since `before_ts` and no open block."""
        lines = self.lines
        idle = []
        for line_id in lines if among is None else among:
            state = lines.get(line_id)
            if (
                state is not None
                and state.max_ts < before_ts
                and (
                    state.rules is None
                    or (state.rules.block is None and state.rules.shadow_block is None)
                )
            ):
                idle.append(line_id)
        for line_id in idle:
            del lines[line_id]
        return idle
