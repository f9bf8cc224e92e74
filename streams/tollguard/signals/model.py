"""Control signals (SPEC section 3): what enforcers and dashboards act on.

The engine builds signals without a wall-clock time so that the same events
always give the same signals; `issued_at` is stamped by whoever publishes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

BLOCK: Final = "block"
UNBLOCK: Final = "unblock"
ALERT: Final = "alert"
ACTIONS: Final = frozenset({BLOCK, UNBLOCK, ALERT})

WARNING: Final = "warning"
CRITICAL: Final = "critical"

ENFORCE: Final = "enforce"
SHADOW: Final = "shadow"

SOURCE_RULE: Final = "rule"
SOURCE_MANUAL: Final = "manual"
SOURCE_EXPIRY: Final = "expiry"


def signal_id(*parts: object) -> str:
    """A stable id from what made the decision, so a replay yields the same id."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def rfc3339(ts_ms: int | None) -> str | None:
    if ts_ms is None:
        return None
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Evidence:
    metric: str
    value: float
    threshold: float
    window_s: int
    first_event_ts: int
    last_event_ts: int
    sample_callees: tuple[str, ...] = ()
    destinations: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "window_s": self.window_s,
            "first_event_ts": rfc3339(self.first_event_ts),
            "last_event_ts": rfc3339(self.last_event_ts),
            "sample_callees": list(self.sample_callees[:5]),
            "destinations": dict(self.destinations),
        }


@dataclass(frozen=True, slots=True)
class ControlSignal:
    signal_id: str
    action: str
    line_id: str
    tenant: str | None
    scope: dict[str, Any]
    severity: str
    rule_id: str | None
    rules_version: str | None
    reason: str
    event_ts: int | None
    expires_at: int | None
    mode: str = ENFORCE
    source: str = SOURCE_RULE
    actor: str | None = None
    evidence: Evidence | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, issued_at_ms: int) -> dict[str, Any]:
        return {
            "v": 1,
            "signal_id": self.signal_id,
            "action": self.action,
            "line_id": self.line_id,
            "tenant": self.tenant,
            "scope": self.scope,
            "severity": self.severity,
            "rule_id": self.rule_id,
            "rules_version": self.rules_version,
            "reason": self.reason,
            "evidence": self.evidence.to_dict() if self.evidence else None,
            "event_ts": rfc3339(self.event_ts),
            "issued_at": rfc3339(issued_at_ms),
            "expires_at": rfc3339(self.expires_at),
            "mode": self.mode,
            "source": self.source,
            "actor": self.actor,
            **self.extra,
        }

    def encode(self, issued_at_ms: int) -> bytes:
        return orjson.dumps(self.to_dict(issued_at_ms))
