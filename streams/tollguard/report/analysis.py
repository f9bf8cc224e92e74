"""What a backtest decided, in the analyst's terms: calls, spend and time before a block.

`Ledger` keeps, per line, the time, estimated cost and destination of every
call, compactly (arrays), so that after the run the report can say how many
calls and how much money went out before the block and how much a block would
have stopped. `build_report` turns a ledger, the signals and an optional
ground-truth file into the JSON report.

Spend is estimated with the rate table of the numbering data
(``rules/numbering/rates.csv`` through `RateTable`, per minute, longest
prefix): a setup is priced at ``default_call_s`` (60 s), replaced by the exact
``duration_s`` when the call's release carries one. It is an estimate of the
retail exposure, not a bill.
"""

from __future__ import annotations

import statistics
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tollguard.engine import EventError, EventParser
from tollguard.engine.events import RELEASE, SETUP, CallEvent
from tollguard.numbering.rates import MICRO, RateTable

DEFAULT_CALL_S = 60.0


def epoch_ms(rfc3339: str | None) -> int | None:
    if not rfc3339:
        return None
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


class LineCalls:
    """Calls of one line in input order: ts, per-minute rate, cost, international, dest."""

    __slots__ = ("cost", "dest", "intl", "rate", "tenant", "ts")

    def __init__(self, tenant: str | None) -> None:
        self.tenant = tenant
        self.ts = array("q")
        self.rate = array("d")
        self.cost = array("d")
        self.intl = bytearray()
        self.dest = array("I")

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(slots=True)
class Ledger:
    parser: EventParser
    rates: RateTable
    default_call_s: float = DEFAULT_CALL_S
    lines: dict[str, LineCalls] = field(default_factory=dict)
    pending: dict[str, tuple[LineCalls, int]] = field(default_factory=dict)
    dest_keys: list[str] = field(default_factory=list)
    dest_index: dict[str, int] = field(default_factory=dict)
    countries: Counter[str] = field(default_factory=Counter)
    min_ts: int | None = None
    max_ts: int | None = None

    seen: int = 0
    dest_rates: list[float] = field(default_factory=list)
    key_len: int = 8

    def __post_init__(self) -> None:
        # '+' and one digit more than the longest rate prefix, and at least 7 so
        # destination-scoped blocks (prefixes like +23276) can be matched.
        self.key_len = max(7, 2 + max((len(p) for p, _ in self.rates.__iter__()), default=0))

    def observe(self, raw: bytes | None) -> None:
        """Parse and record raw bytes (when the events were not tapped; see `TappedParser`)."""
        try:
            event = self.parser.parse(raw)
        except EventError:
            return
        self.observe_event(event)

    def observe_event(self, event: CallEvent) -> None:
        self.seen += 1
        if event.type == SETUP:
            if event.call_id in self.pending:
                return
            line = self.lines.get(event.line_id)
            if line is None:
                line = self.lines[event.line_id] = LineCalls(event.tenant)
            e164 = event.e164 or ""
            # Rates depend only on the first digits: look each prefix up once.
            key = e164[: self.key_len]
            idx = self.dest_index.get(key)
            if idx is None:
                idx = self.dest_index[key] = len(self.dest_keys)
                self.dest_keys.append(key)
                self.dest_rates.append(self.rates.per_minute(e164) / MICRO if e164 else 0.0)
            rate = self.dest_rates[idx]
            self.pending[event.call_id] = (line, len(line.ts))
            line.ts.append(event.ts_ms)
            line.rate.append(rate)
            line.cost.append(rate * self.default_call_s / 60)
            line.intl.append(1 if event.international else 0)
            line.dest.append(idx)
            if event.international and event.dest is not None:
                self.countries[event.dest.country_code] += 1
            ts = event.ts_ms
            self.min_ts = ts if self.min_ts is None else min(self.min_ts, ts)
            self.max_ts = ts if self.max_ts is None else max(self.max_ts, ts)
        elif event.type == RELEASE and event.duration_s is not None:
            found = self.pending.pop(event.call_id, None)
            if found is not None:
                line, i = found
                line.cost[i] = line.rate[i] * event.duration_s / 60


class TappedParser:
    """Stands in for a processor's parser: parses once, shows each event to the ledger.

    The backtest would otherwise parse every event twice (engine and ledger).
    """

    __slots__ = ("_ledger", "_parse")

    def __init__(self, parser: EventParser, ledger: Ledger) -> None:
        self._parse = parser.parse
        self._ledger = ledger

    def parse(self, raw: bytes | None) -> CallEvent:
        event = self._parse(raw)
        self._ledger.observe_event(event)
        return event


@dataclass(frozen=True, slots=True)
class Episode:
    """One block on a line: from its event time until an unblock (or the end)."""

    rule_id: str
    start_ms: int
    end_ms: int | None
    scope: Mapping[str, Any]
    mode: str
    reason: str


def episodes(signals: Iterable[Mapping[str, Any]]) -> dict[str, list[Episode]]:
    out: dict[str, list[Episode]] = {}
    open_: dict[tuple[str, str], Mapping[str, Any]] = {}
    for s in signals:
        key = (s["line_id"], s.get("rule_id") or "")
        if s["action"] == "block":
            open_.setdefault(key, s)
        elif s["action"] == "unblock" and key in open_:
            b = open_.pop(key)
            out.setdefault(key[0], []).append(_episode(b, epoch_ms(s.get("event_ts"))))
    for key, b in open_.items():
        out.setdefault(key[0], []).append(_episode(b, None))
    for eps in out.values():
        eps.sort(key=lambda e: e.start_ms)
    return out


def _episode(block: Mapping[str, Any], end_ms: int | None) -> Episode:
    return Episode(
        block.get("rule_id") or "",
        epoch_ms(block.get("event_ts")) or 0,
        end_ms,
        block.get("scope") or {"kind": "all"},
        block.get("mode", "enforce"),
        block.get("reason", ""),
    )


def _in_scope(ledger: Ledger, line: LineCalls, i: int, scope: Mapping[str, Any]) -> bool:
    kind = scope.get("kind")
    if kind == "international":
        return bool(line.intl[i])
    if kind == "destinations":
        dest = ledger.dest_keys[line.dest[i]]
        return any(dest.startswith(str(p)[: ledger.key_len]) for p in scope.get("prefixes", ()))
    return True


def _blocked(ledger: Ledger, line: LineCalls, i: int, eps: Sequence[Episode]) -> bool:
    ts = line.ts[i]
    return any(
        e.start_ms < ts
        and (e.end_ms is None or ts < e.end_ms)
        and _in_scope(ledger, line, i, e.scope)
        for e in eps
    )


def _span(line: LineCalls, start: int, end: int | None) -> tuple[int, float]:
    """Calls and spend on a line with start <= ts < end (end None = to the last)."""
    calls = 0
    spend = 0.0
    for i, ts in enumerate(line.ts):
        if ts >= start and (end is None or ts < end):
            calls += 1
            spend += line.cost[i]
    return calls, spend


def _pct(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def build_report(
    ledger: Ledger,
    signals: Sequence[Mapping[str, Any]],
    truth: Mapping[str, Any] | None,
    header: Mapping[str, Any],
) -> dict[str, Any]:
    eps = episodes(signals)
    decisions: dict[str, dict[str, int]] = {}
    for s in signals:
        rule = s.get("rule_id") or "(manual)"
        counts = decisions.setdefault(rule, {"alert": 0, "block": 0, "unblock": 0, "lines": 0})
        counts[s["action"]] += 1
    for rule, counts in decisions.items():
        counts["lines"] = len({s["line_id"] for s in signals if (s.get("rule_id") or "") == rule})
    first_alert: dict[str, int] = {}
    for s in signals:
        if s["action"] == "alert":
            ts = epoch_ms(s.get("event_ts")) or 0
            first_alert.setdefault(s["line_id"], ts)
    attacked = {a["line_id"]: a for a in (truth or {}).get("attacked", [])}

    lines_out: list[dict[str, Any]] = []
    interesting = sorted(set(eps) | set(first_alert) | set(attacked))
    for line_id in interesting:
        line = ledger.lines.get(line_id)
        if line is None:
            continue
        line_eps = eps.get(line_id, [])
        truth_row = attacked.get(line_id)
        first_block = line_eps[0] if line_eps else None
        row: dict[str, Any] = {
            "line_id": line_id,
            "tenant": line.tenant,
            "attacked": truth_row is not None,
            "calls": len(line),
            "international_calls": sum(line.intl),
            "spend": round(sum(line.cost), 2),
            "first_alert_ts": first_alert.get(line_id),
            "blocks": [
                {
                    "rule_id": e.rule_id,
                    "start_ts": e.start_ms,
                    "end_ts": e.end_ms,
                    "scope": e.scope,
                    "mode": e.mode,
                    "reason": e.reason,
                }
                for e in line_eps
            ],
        }
        if truth_row is not None:
            a0, a1 = int(truth_row["start_ts"]), int(truth_row["end_ts"])
            calls, spend = _span(line, a0, a1 + 1)
            block_at = next((e.start_ms for e in line_eps if e.start_ms >= a0), None)
            before_calls, before_spend = _span(line, a0, block_at if block_at else a1 + 1)
            prevented = sum(
                line.cost[i]
                for i, ts in enumerate(line.ts)
                if a0 <= ts <= a1 and _blocked(ledger, line, i, line_eps)
            )
            row.update(
                attack_start_ts=a0,
                attack_end_ts=a1,
                attack_calls=calls,
                attack_spend=round(spend, 2),
                first_block_ts=block_at,
                time_to_block_s=None if block_at is None else round((block_at - a0) / 1000, 1),
                calls_before_block=before_calls,
                spend_before_block=round(before_spend, 2),
                spend_prevented=round(prevented, 2),
            )
        elif first_block is not None:
            # No ground truth: count from the first call of the triggering window.
            start = _evidence_start(signals, line_id) or first_block.start_ms
            before_calls, before_spend = _span(line, start, first_block.start_ms + 1)
            legit_blocked = sum(1 for i in range(len(line)) if _blocked(ledger, line, i, line_eps))
            row.update(
                first_block_ts=first_block.start_ms,
                time_to_block_s=round((first_block.start_ms - start) / 1000, 1),
                calls_before_block=before_calls,
                spend_before_block=round(before_spend, 2),
                calls_while_blocked=legit_blocked,
            )
        lines_out.append(row)

    report: dict[str, Any] = {
        **header,
        "input": {
            "lines": len(ledger.lines),
            "calls": sum(len(x) for x in ledger.lines.values()),
            "first_ts": ledger.min_ts,
            "last_ts": ledger.max_ts,
            "top_countries": dict(ledger.countries.most_common(10)),
        },
        "spend_model": {
            "rates": "rules/numbering/rates.csv (per minute, longest prefix)",
            "default_call_s": ledger.default_call_s,
            "note": "setups priced at default_call_s, replaced by release duration_s",
        },
        "decisions_by_rule": decisions,
        "blocked_lines": sorted(eps),
        "alerted_lines": sorted(first_alert),
        "lines": lines_out,
    }
    if truth is not None:
        report["evaluation"] = evaluate(lines_out, attacked, truth)
    return report


def _evidence_start(signals: Sequence[Mapping[str, Any]], line_id: str) -> int | None:
    for s in signals:
        if s["line_id"] == line_id and s["action"] == "block":
            ev = s.get("evidence") or {}
            return epoch_ms(ev.get("first_event_ts"))
    return None


def evaluate(
    lines: Sequence[Mapping[str, Any]], attacked: Mapping[str, Any], truth: Mapping[str, Any]
) -> dict[str, Any]:
    """Line-level precision and recall of blocks (and of any decision), times and losses."""
    rows = {r["line_id"]: r for r in lines}
    blocked = {r["line_id"] for r in lines if r["blocks"]}
    flagged = blocked | {r["line_id"] for r in lines if r["first_alert_ts"] is not None}
    tp = {line for line in attacked if rows.get(line, {}).get("first_block_ts") is not None}
    fp = blocked - set(attacked)
    flagged_tp = {
        line
        for line in attacked
        if line in rows
        and (
            rows[line].get("first_block_ts") is not None
            or (rows[line]["first_alert_ts"] or 0) >= attacked[line]["start_ts"]
        )
    }
    ttb = [rows[line]["time_to_block_s"] for line in tp]
    cbb = [rows[line]["calls_before_block"] for line in tp]
    total = sum(rows[line]["attack_spend"] for line in attacked if line in rows)
    before = sum(rows[line]["spend_before_block"] for line in attacked if line in rows)
    prevented = sum(rows[line]["spend_prevented"] for line in attacked if line in rows)
    return {
        "scenario": truth.get("scenario"),
        "attacked_lines": len(attacked),
        "blocked_lines": len(blocked),
        "true_positives": len(tp),
        "false_positive_lines": sorted(fp),
        "precision": _pct(len(tp), len(tp) + len(fp)),
        "recall": _pct(len(tp), len(attacked)),
        "alert_or_block_precision": _pct(
            len(flagged_tp), len(flagged - set(attacked)) + len(flagged_tp)
        ),
        "alert_or_block_recall": _pct(len(flagged_tp), len(attacked)),
        "legit_lines_alerted": len(flagged - set(attacked)),
        "time_to_block_s": _summary(ttb),
        "calls_before_block": _summary(cbb),
        "attack_spend": round(total, 2),
        "spend_before_block": round(before, 2),
        "spend_prevented": round(prevented, 2),
        "spend_prevented_share": _pct(prevented, total),
    }


def _summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "max": ordered[-1],
    }
