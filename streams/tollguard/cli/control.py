"""Manual control: `tollguard block`, `tollguard unblock` and `tollguard blocks`.

An operator's decision travels exactly like a rule's: a SPEC section 3
control signal with `source: "manual"` and the operator as `actor`, keyed by
line, on `tollguard.control` (what enforcers follow) and on the compacted
`tollguard.blocks` (what a new enforcer rebuilds its list from).

Who may do this is decided by Kafka, not by tollguard: the command connects
with the operator's own credentials (TOLLGUARD_SASL_*, TOLLGUARD_SSL_*), and
only principals with Write on the control and blocks topics can publish; see
README, "Manual control". `--actor` (default: the OS user) is recorded for
the audit trail.
"""

from __future__ import annotations

import getpass
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from tollguard.config import Settings
from tollguard.signals.model import (
    BLOCK,
    CRITICAL,
    ENFORCE,
    SOURCE_MANUAL,
    UNBLOCK,
    ControlSignal,
    rfc3339,
    signal_id,
)

_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PREFIX = re.compile(r"^\+\d{1,15}$")


def parse_ttl(text: str | None) -> int | None:
    """Seconds from `90s`, `30m`, `1h`, `2d`, `1w`; None for `none`/`0`/absent (indefinite)."""
    if text is None or text.strip().lower() in ("", "none", "0", "forever"):
        return None
    match = _TTL.match(text)
    if not match:
        raise ValueError(f"bad TTL {text!r}: use e.g. 30m, 1h, 2d or none")
    seconds = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if seconds <= 0:
        return None
    return seconds


def parse_scope(text: str) -> dict[str, Any]:
    """`all`, `international`, or a comma list of E.164 prefixes like `+232,+220`."""
    value = text.strip().lower()
    if value in ("all", "international"):
        return {"kind": value}
    prefixes = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in prefixes if not _PREFIX.match(p)]
    if not prefixes or bad:
        raise ValueError(f"bad scope {text!r}: all, international or prefixes like +232,+220")
    return {"kind": "destinations", "prefixes": prefixes}


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers): still record something
        return "unknown"


def manual_signal(
    action: str,
    line_id: str,
    actor: str,
    reason: str,
    issued_ms: int,
    *,
    scope: dict[str, Any] | None = None,
    ttl_s: int | None = None,
    tenant: str | None = None,
) -> ControlSignal:
    """The control signal for one manual decision; same inputs, same `signal_id`."""
    scope = scope or {"kind": "international"}
    expires = issued_ms + ttl_s * 1000 if (action == BLOCK and ttl_s) else None
    sid = signal_id(
        SOURCE_MANUAL, action, line_id, actor, orjson.dumps(scope).decode(), expires, issued_ms
    )
    return ControlSignal(
        signal_id=sid,
        action=action,
        line_id=line_id,
        tenant=tenant,
        scope=scope,
        severity=CRITICAL,
        rule_id=None,
        rules_version=None,
        reason=reason,
        event_ts=None,
        expires_at=expires,
        mode=ENFORCE,
        source=SOURCE_MANUAL,
        actor=actor,
    )


def publish_signal(settings: Settings, signal: ControlSignal, issued_ms: int) -> dict[str, Any]:
    """Validate against the published schema, then write to control and blocks (acks=all)."""
    from kafka import KafkaProducer  # type: ignore[import-untyped]
    from kafka.errors import AuthorizationError  # type: ignore[import-untyped]

    from tollguard.kafka_security import describe, kafka_python_config, preflight
    from tollguard.signals.schema import validate_control_signal

    document = signal.to_dict(issued_ms)
    validate_control_signal(document)
    value = orjson.dumps(document)
    key = signal.line_id.encode()
    preflight(settings)
    producer = KafkaProducer(
        **kafka_python_config(settings), acks="all", retries=5, max_block_ms=30_000
    )
    try:
        futures = [
            producer.send(settings.topic_control, key=key, value=value),
            producer.send(settings.topic_blocks, key=key, value=value),
        ]
        for future in futures:
            future.get(timeout=30)
    except AuthorizationError as exc:
        raise SystemExit(
            f"tollguard: Kafka refused the signal ({type(exc).__name__}): {describe(settings)} "
            f"may not write to {settings.topic_control} and {settings.topic_blocks}. Manual "
            "control is authorised by Kafka ACLs; see README, 'Manual control'."
        ) from None
    finally:
        producer.close()
    return document


def current_blocks(
    settings: Settings, now_ms: int, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """The latest signal per line on the compacted blocks topic, kept if it is a live block."""
    from kafka import KafkaConsumer, TopicPartition

    from tollguard.kafka_security import kafka_python_config, preflight

    preflight(settings)
    consumer = KafkaConsumer(
        **kafka_python_config(settings), group_id=None, enable_auto_commit=False
    )
    latest: dict[str, dict[str, Any] | None] = {}
    try:
        topic = settings.topic_blocks
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise SystemExit(f"tollguard: topic {topic} not found at {settings.broker}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for msg in records:
                    line = (msg.key or b"").decode("utf-8", errors="replace")
                    latest[line] = _decode(msg.value)
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
        if remaining:
            raise SystemExit(f"tollguard: could not read {topic} to its end in {timeout_s:.0f}s")
    finally:
        consumer.close()
    blocks = []
    for signal in latest.values():
        if signal is None or signal.get("action") != BLOCK:
            continue
        expires = _ms(signal.get("expires_at"))
        if expires is not None and expires <= now_ms:
            continue
        blocks.append(signal)
    return sorted(blocks, key=lambda s: str(s.get("line_id")))


def _decode(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        return None


def _scope_text(scope: Any) -> str:
    if isinstance(scope, dict) and scope.get("kind") == "destinations":
        return ",".join(str(p) for p in scope.get("prefixes") or [])
    return str(scope.get("kind")) if isinstance(scope, dict) else "?"


def run_block(args: Any, settings: Settings) -> int:
    try:
        ttl = parse_ttl(args.ttl)
        scope = parse_scope(args.scope)
    except ValueError as exc:
        print(f"tollguard block: {exc}", file=sys.stderr)
        return 2
    actor = args.actor or default_actor()
    issued = int(time.time() * 1000)
    reason = args.reason or f"manual block by {actor}"
    signal = manual_signal(
        BLOCK, args.line, actor, reason, issued, scope=scope, ttl_s=ttl, tenant=args.tenant
    )
    document = publish_signal(settings, signal, issued)
    until = document["expires_at"] or "until unblocked"
    print(
        f"blocked {args.line} ({_scope_text(scope)}) {until}; actor {actor}; "
        f"signal {document['signal_id']} on {settings.topic_control} and {settings.topic_blocks}"
    )
    return 0


def run_unblock(args: Any, settings: Settings) -> int:
    actor = args.actor or default_actor()
    issued = int(time.time() * 1000)
    reason = args.reason or f"manual unblock by {actor}"
    signal = manual_signal(
        UNBLOCK, args.line, actor, reason, issued, scope={"kind": "all"}, tenant=args.tenant
    )
    document = publish_signal(settings, signal, issued)
    print(f"unblocked {args.line}; actor {actor}; signal {document['signal_id']}")
    return 0


def run_blocks(args: Any, settings: Settings) -> int:
    now = int(time.time() * 1000)
    blocks = current_blocks(settings, now)
    if args.json:
        sys.stdout.write(orjson.dumps(blocks, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not blocks:
        print(f"no active blocks on {settings.topic_blocks} ({rfc3339(now)})")
        return 0
    print(f"{'line':<28} {'scope':<16} {'source':<7} {'by':<20} {'expires':<25} reason")
    for s in blocks:
        by = s.get("actor") or s.get("rule_id") or ""
        print(
            f"{s.get('line_id', '')!s:<28} {_scope_text(s.get('scope')):<16} "
            f"{s.get('source', '')!s:<7} {by!s:<20} {s.get('expires_at') or 'never'!s:<25} "
            f"{s.get('reason', '')}"
        )
    print(f"{len(blocks)} active block(s) at {datetime.now(UTC).isoformat(timespec='seconds')}")
    return 0
