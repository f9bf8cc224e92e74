"""The detection engine: per-line windows, rule decisions and block lifecycle.

One engine holds the state of one shard of lines (in the worker: one Kafka
partition), so state moves with partitions. It never reads a clock: time is
the event time of what it is fed, plus the `now` its caller passes to
`expire`. That keeps replays, backtests and tests deterministic.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from tollguard.engine.dedup import RecentIds
from tollguard.engine.events import SETUP, CallEvent
from tollguard.engine.rules import CountRule, RulePack
from tollguard.engine.windows import SlidingWindow
from tollguard.numbering import Destination
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
SAMPLE_CALLEES = 5


@dataclass(frozen=True, slots=True)
class EngineConfig:
    # Events older than a line's newest event by more than this are "late".
    lateness_ms: int = 60_000


@dataclass(slots=True)
class OpenBlock:
    signal: ControlSignal
    expires_at: int | None


class LineState:
    """Everything the engine remembers about one line."""

    __slots__ = ("alerting", "block", "max_ts", "recent", "shadow_block", "tenant", "windows")

    def __init__(self, tenant: str | None) -> None:
        self.tenant = tenant
        self.max_ts = 0
        self.windows: dict[str, SlidingWindow] = {}
        self.alerting: set[str] | None = None
        self.block: OpenBlock | None = None
        self.shadow_block: OpenBlock | None = None
        self.recent: list[str] | None = None


@dataclass(slots=True)
class EngineStats:
    late: int = 0
    duplicates: int = 0
    processed: int = 0


def format_span(ms: int) -> str:
    seconds = ms // 1000
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


@dataclass(slots=True)
class Engine:
    pack: RulePack
    config: EngineConfig = field(default_factory=EngineConfig)
    lines: dict[str, LineState] = field(default_factory=dict)
    stats: EngineStats = field(default_factory=EngineStats)
    max_ts: int = 0
    _expiries: list[tuple[int, str, str]] = field(default_factory=list)
    _dests: dict[str, Destination] = field(default_factory=dict)
    _dedup: RecentIds = field(init=False)

    def __post_init__(self) -> None:
        self._dedup = RecentIds(self.config.lateness_ms)

    def set_pack(self, pack: RulePack) -> None:
        """Swap rules in place; windows of rules that keep their id keep their calls."""
        kept = {r.id for r in pack.rules}
        for state in self.lines.values():
            for rule_id in [r for r in state.windows if r not in kept]:
                del state.windows[rule_id]
        self.pack = pack

    def process(self, event: CallEvent, out: list[ControlSignal]) -> str | None:
        """Feed one event; append any signals to `out`.

        Returns a rejection reason ("late") or "duplicate", else None.
        """
        state = self.lines.get(event.line_id)
        if state is None:
            state = self.lines[event.line_id] = LineState(event.tenant)
        ts = event.ts_ms
        if ts < state.max_ts - self.config.lateness_ms:
            self.stats.late += 1
            return "late"
        if not self._dedup.add(event.call_id, event.type, ts):
            self.stats.duplicates += 1
            return "duplicate"
        self.stats.processed += 1
        if ts > state.max_ts:
            state.max_ts = ts
            if ts > self.max_ts:
                self.max_ts = ts
        if event.tenant is not None:
            state.tenant = event.tenant
        if event.type != SETUP:
            return None
        matched = False
        for rule in self.pack.rules:
            if rule.matches(event):
                matched = True
                self._count(rule, state, event, out)
        if matched and event.e164 is not None:
            recent = state.recent
            if recent is None:
                recent = state.recent = []
            recent.append(event.e164)
            if len(recent) > SAMPLE_CALLEES:
                del recent[0]
        return None

    def _count(
        self, rule: CountRule, state: LineState, event: CallEvent, out: list[ControlSignal]
    ) -> None:
        window = state.windows.get(rule.id)
        if window is None:
            window = state.windows[rule.id] = SlidingWindow()
        dest = event.dest
        tag = UNKNOWN_DEST
        if dest is not None:
            tag = "+" + dest.prefix
            if tag not in self._dests:
                self._dests[tag] = dest
        count = window.add(event.ts_ms, tag, state.max_ts, rule.window_ms, rule.cap)
        if rule.critical is not None and count >= rule.critical:
            slot = state.shadow_block if rule.mode == SHADOW else state.block
            if slot is None:
                self._block(rule, state, event, window, count, out)
            return
        alerting = state.alerting
        if rule.warning is not None and count >= rule.warning:
            if alerting is None or rule.id not in alerting:
                if alerting is None:
                    alerting = state.alerting = set()
                alerting.add(rule.id)
                out.append(self._signal(ALERT, WARNING, rule, state, event, window, count))
        elif alerting is not None and rule.id in alerting:
            alerting.discard(rule.id)  # below warning again: the episode is over

    def _block(
        self,
        rule: CountRule,
        state: LineState,
        event: CallEvent,
        window: SlidingWindow,
        count: int,
        out: list[ControlSignal],
    ) -> None:
        signal = self._signal(BLOCK, CRITICAL, rule, state, event, window, count)
        block = OpenBlock(signal, signal.expires_at)
        if rule.mode == SHADOW:
            state.shadow_block = block
        else:
            state.block = block
        if block.expires_at is not None:
            heapq.heappush(self._expiries, (block.expires_at, event.line_id, signal.signal_id))
        out.append(signal)

    def _signal(
        self,
        action: str,
        severity: str,
        rule: CountRule,
        state: LineState,
        event: CallEvent,
        window: SlidingWindow,
        count: int,
    ) -> ControlSignal:
        threshold = rule.critical if severity == CRITICAL else rule.warning
        assert threshold is not None
        by_dest = window.tag_counts()
        expires = None
        if action == BLOCK and rule.ttl_ms is not None:
            expires = event.ts_ms + rule.ttl_ms
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
            reason=self._reason(rule, count, threshold, by_dest),
            event_ts=event.ts_ms,
            expires_at=expires,
            mode=rule.mode,
            evidence=Evidence(
                metric="calls",
                value=count,
                threshold=threshold,
                window_s=rule.window_ms // 1000,
                first_event_ts=window.times[0],
                last_event_ts=window.times[-1],
                sample_callees=tuple(state.recent or ())[-(SAMPLE_CALLEES - 1) :]
                + ((event.e164,) if event.e164 else ()),
                destinations=tuple(sorted(by_dest.items(), key=lambda kv: (-kv[1], kv[0]))),
            ),
        )

    def _scope(self, rule: CountRule, by_dest: dict[str, int]) -> dict[str, object]:
        if rule.block_scope == "destinations":
            return {"kind": "destinations", "prefixes": sorted(by_dest)}
        return {"kind": rule.block_scope}

    def _reason(self, rule: CountRule, count: int, threshold: int, by_dest: dict[str, int]) -> str:
        span = format_span(rule.window_ms)
        what = "international calls" if rule.international_only else "calls"
        ranked = sorted(by_dest.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(ranked) == 1:
            target = self._label(ranked[0][0])
            return f"{count} calls to {target} in {span}, limit {threshold}"
        top = ", ".join(f"{self._label(tag)} {n}" for tag, n in ranked[:3])
        return f"{count} {what} in {span} ({top}), limit {threshold}"

    def _label(self, tag: str) -> str:
        dest = self._dests.get(tag)
        return dest.label if dest is not None else "unknown destinations"

    def expire(self, now_ms: int) -> list[ControlSignal]:
        """Lift blocks whose TTL has passed at `now_ms`; returns the unblock signals."""
        out: list[ControlSignal] = []
        heap = self._expiries
        while heap and heap[0][0] <= now_ms:
            expires_at, line_id, sid = heapq.heappop(heap)
            state = self.lines.get(line_id)
            if state is None:
                continue
            for shadow in (False, True):
                block = state.shadow_block if shadow else state.block
                if block is None or block.signal.signal_id != sid:
                    continue
                if shadow:
                    state.shadow_block = None
                else:
                    state.block = None
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
        return sum(1 for s in self.lines.values() if s.block is not None)
