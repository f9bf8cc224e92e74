"""`tollguard worker` as its own process on a real broker: an attack in, a block out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import (
    WorkerProcess,
    events_as_records,
    isolated_settings,
    produce,
    read_until,
)
from tollguard.signals.schema import validate_control_signal
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge

pytestmark = pytest.mark.e2e

MALFORMED: list[tuple[bytes, str]] = [
    (b'{"call_id": "x1", "ts": 1795910400000, "line_id": "l', "bad_json"),
    (b'{"ts": 1795910400000, "line_id": "line-x", "callee": "0312345678"}', "missing_field"),
    (
        b'{"call_id": "x3", "ts": 1795910400000, "line_id": "line-x", "callee": "0102327abc"}',
        "bad_number",
    ),
    (
        b'{"call_id": "x4", "ts": "half past nine", "line_id": "line-x", "callee": "0312345678"}',
        "bad_timestamp",
    ),
    (
        b'{"call_id": "x5", "ts": 1795910400000, "line_id": "line-x", "type": "release",'
        b' "duration_s": "3x"}',
        "bad_type",
    ),
]


@pytest.fixture
def worker(kafka_bootstrap: str, tmp_path: Path) -> Any:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    proc = WorkerProcess(settings, tmp_path / "worker.log").start()
    yield proc
    proc.stop()


def test_attack_is_blocked_early_and_only_the_attacked_line(
    kafka_bootstrap: str, worker: WorkerProcess
) -> None:
    settings = worker.settings
    start = int(time.time() * 1000) - 6 * 3_600_000
    spec = AttackSpec(calls=60)
    attack_start = start + 3_600_000
    bg = list(
        background(BackgroundSpec(lines=40, calls_per_hour=8), start, start + 4 * 3_600_000, 3)
    )
    atk = list(attack(spec, attack_start, 3))
    events = list(merge(iter(bg), iter(atk)))

    # Malformed input goes first and in the middle: good events must keep flowing.
    half = len(events) // 2
    records = [(b"line-x", raw) for raw, _ in MALFORMED[:2]]
    records += list(events_as_records(events[:half]))
    records += [(b"line-x", raw) for raw, _ in MALFORMED[2:]]
    records += list(events_as_records(events[half:]))
    produce(kafka_bootstrap, settings.topic_events, records)

    signals = read_until(
        kafka_bootstrap,
        settings.topic_control,
        lambda seen: any(s["action"] == "block" for s in seen),
        timeout=90,
    )
    blocks = [s for s in signals if s["action"] == "block"]
    assert blocks, f"no block signal; worker log:\n{worker.log_tail()}"
    for s in signals:
        validate_control_signal(s)
    assert {s["line_id"] for s in signals} == {spec.line_id}
    block = blocks[0]
    twentieth = atk[19]["ts"]
    assert _ms(block["event_ts"]) <= twentieth, "block came after the 20th attack call"
    assert block["severity"] == "critical" and block["mode"] == "enforce"
    assert block["evidence"]["destinations"].get("+232", 0) >= 1
    assert block["rules_version"]

    dead = read_until(
        kafka_bootstrap,
        settings.topic_deadletter,
        lambda seen: len(seen) >= len(MALFORMED),
        timeout=60,
    )
    assert sorted(d["reason"] for d in dead) == sorted(r for _, r in MALFORMED)
    for d in dead:
        assert d["topic"] == settings.topic_events
        assert d["error"] and isinstance(d["offset"], int) and isinstance(d["partition"], int)
        assert d["raw"].encode() in {raw for raw, _ in MALFORMED}

    # Every good event is counted, every bad one rejected with its reason.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.metric("tollguard_events_total", type="setup") == len(events):
            break
        time.sleep(0.5)
    assert worker.metric("tollguard_events_total", type="setup") == len(events)
    for _, reason in MALFORMED:
        assert worker.metric("tollguard_events_rejected_total", reason=reason) >= 1
    assert (
        worker.metric(
            "tollguard_signals_total",
            action="block",
            rule=block["rule_id"],
            severity="critical",
            mode="enforce",
        )
        == 1
    )
    assert worker.metric("tollguard_decision_latency_seconds_count") >= 1
    assert worker.metric("tollguard_event_lag_seconds_count") == len(events)
    assert worker.proc is not None and worker.proc.poll() is None, "worker died on bad input"

    # The compacted blocks topic holds the block for the new enforcer.
    latest = read_until(
        kafka_bootstrap, settings.topic_blocks, lambda seen: len(seen) >= 1, timeout=30
    )
    assert [s["signal_id"] for s in latest][:1] == [block["signal_id"]]


def _ms(rfc3339: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)
