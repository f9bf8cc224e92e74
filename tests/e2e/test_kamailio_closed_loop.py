"""Closed loop (issue 6): a real Kamailio reports calls, tollguard decides, Kamailio blocks.

sipp plays a hijacked PBX dialling Sierra Leone (JP dial plan: 010 232 ...)
from one line while other lines make ordinary calls through Kamailio to a
sipp far end. Kamailio mirrors SIP to `tollguard ingest hep`, the worker
decides on real Kafka, `tollguard enforce kamailio` writes the block into
Kamailio's htable, and Kamailio answers the attacking line with 403 until the
block's TTL (20 s here) runs out. Every load is bounded in calls and time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.sip_support import (
    Loop,
    call_outcomes,
    metric,
    missing_sip_tools,
    rpc,
    wait_for,
)
from tests.e2e.support import WorkerProcess, isolated_settings, read_until

pytestmark = pytest.mark.e2e

# A short window and TTL so the test sees the whole block lifecycle in ~1 min.
RULES = """\
pack: closed-loop
version: "test-1"
dial_plan: JP
rules:
  - id: hot-destinations
    kind: count
    description: calls to Sierra Leone in a short window (closed-loop test)
    match:
      international: true
      prefixes: ["+232"]
    window: 15s
    warning: 2
    critical: 4
    ttl: 20s
    block_scope: international
"""

ATTACKER = "pbx-hijacked"
ATTACK_CALLS = 20
ORDINARY_CALLS = 24
# Domestic calls (0 + area code) and one international call to the UK (+44),
# which this pack does not watch.
ORDINARY_ROWS = [
    ("pbx-b", "0312345678"),
    ("pbx-c", "0661234567"),
    ("pbx-d", "0521234567"),
    ("pbx-e", "01044201234567"),
]


@pytest.fixture
def closed_loop(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Loop, WorkerProcess]]:
    missing = missing_sip_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; .ci/run should have installed them")
        pytest.skip(missing)
    rules = tmp_path / "closed-loop.yaml"
    rules.write_text(RULES)
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=2, rules=str(rules))
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    loop = Loop(tmp_path, settings)
    try:
        worker.start()
        loop.start_far_end()
        loop.start_collector()
        loop.start_kamailio()
        loop.start_enforcer()
        yield loop, worker
    finally:
        loop.stop()
        worker.stop()


def test_kamailio_rejects_the_hijacked_line_until_the_block_expires(
    kafka_bootstrap: str, closed_loop: tuple[Loop, WorkerProcess]
) -> None:
    loop, worker = closed_loop
    attack_rows = [(ATTACKER, f"0102327612{n:04d}") for n in range(ATTACK_CALLS)]
    ordinary = loop.pbx("ordinary", ORDINARY_ROWS, calls=ORDINARY_CALLS, rate=2, hold_ms=500)
    attack = loop.pbx("attack", attack_rows, calls=ATTACK_CALLS, rate=4, hold_ms=1000)
    attack.wait(60)
    ordinary.wait(60)

    atk = call_outcomes(loop.workdir / "attack.messages")
    assert len(atk) == ATTACK_CALLS, attack.tail()
    first_403 = next((c for c in atk if c.final == 403), None)
    assert first_403 is not None and first_403.final_at is not None, (
        f"Kamailio never answered the attacking line with 403.\nworker:\n{worker.log_tail()}\n"
        f"collector:\n{loop.named['collector'].tail()}\n"
        f"enforcer:\n{loop.named['enforcer'].tail()}"
    )
    answered = [c for c in atk if c.final == 200]
    later = [c for c in atk if c.invite_at > first_403.invite_at]
    position = atk.index(first_403) + 1
    measured = {
        "attack_calls": len(atk),
        "calls_completed_before_block": len(answered),
        "first_403_at_attack_call": position,
        "first_attack_call_to_first_403_s": round(first_403.final_at - atk[0].invite_at, 3),
        "rule_critical": 4,
    }
    (loop.workdir / "measured.json").write_text(json.dumps(measured))
    print(f"\nclosed loop measured: {measured}")
    # The block lands within a bounded number of attack calls and then holds.
    assert position <= 12, measured
    assert all(c.final == 200 for c in atk[: position - 1]), [c.final for c in atk]
    assert all(c.final == 403 for c in later), [c.final for c in atk]

    # The other lines kept connecting throughout.
    calls = call_outcomes(loop.workdir / "ordinary.messages")
    assert len(calls) == ORDINARY_CALLS
    assert [c.final for c in calls] == [200] * ORDINARY_CALLS

    # tollguard blocked exactly the attacking line, once.
    control = read_until(
        kafka_bootstrap,
        loop.settings.topic_control,
        lambda seen: any(s["action"] == "block" for s in seen),
        timeout=30,
    )
    blocks = [s for s in control if s["action"] == "block"]
    assert [s["line_id"] for s in blocks] == [ATTACKER]
    assert metric(loop.enforcer_web, "tollguard_enforcer_applied_total", op="set") >= 1
    lag_n = metric(loop.enforcer_web, "tollguard_enforcer_lag_seconds_count")
    lag_sum = metric(loop.enforcer_web, "tollguard_enforcer_lag_seconds_sum")
    measured["signal_issued_to_htable_s"] = round(lag_sum / lag_n, 4) if lag_n else None
    decided = worker.metric("tollguard_decision_latency_seconds_count")
    if decided:
        measured["worker_decision_latency_avg_s"] = round(
            worker.metric("tollguard_decision_latency_seconds_sum") / decided, 4
        )
    (loop.workdir / "measured.json").write_text(json.dumps(measured))
    print(f"closed loop latencies: {measured}")

    # After the TTL the worker's unblock reaches Kamailio and the line connects again.
    wait_for(
        "the unblock to be applied",
        lambda: metric(loop.enforcer_web, "tollguard_enforcer_applied_total", op="delete") >= 1,
        60,
        loop.named["enforcer"],
    )
    assert "error" in rpc(loop.http_port, "htable.get", "tgblock", ATTACKER)
    again = loop.pbx("after-ttl", [(ATTACKER, "01023276123456")], calls=1, rate=1, hold_ms=200)
    again.wait(30)
    assert [c.final for c in call_outcomes(loop.workdir / "after-ttl.messages")] == [200]

    # The collector turned the mirrored SIP into events, and dropped nothing as malformed.
    setups = ATTACK_CALLS + ORDINARY_CALLS + 1
    wait_for(
        "every setup event to be produced",
        lambda: metric(loop.collector_web, "tollguard_hep_events_total", type="setup") >= setups,
        20,
    )
    web = loop.collector_web
    assert metric(web, "tollguard_hep_events_total", type="answer") >= ORDINARY_CALLS
    assert metric(web, "tollguard_hep_events_total", type="release") >= ORDINARY_CALLS
    for reason in ("not_hep", "bad_chunk", "bad_sip", "error"):
        assert metric(web, "tollguard_hep_dropped_total", reason=reason) == 0


def _signal(sid: str, action: str, line: str, *, mode: str = "enforce", ttl_s: int = 90) -> dict:
    import time

    from tollguard.signals.model import rfc3339

    now = int(time.time() * 1000)
    return {
        "v": 1,
        "signal_id": sid,
        "action": action,
        "line_id": line,
        "tenant": None,
        "scope": {"kind": "international"},
        "severity": "critical",
        "rule_id": "hot-destinations",
        "rules_version": "test-1",
        "reason": "test",
        "evidence": None,
        "event_ts": rfc3339(now),
        "issued_at": rfc3339(now),
        "expires_at": rfc3339(now + ttl_s * 1000) if action == "block" else None,
        "mode": mode,
        "source": "rule" if action == "block" else "manual",
        "actor": None,
    }


def test_enforcer_rebuilds_from_blocks_waits_for_kamailio_and_resyncs_after_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    missing = missing_sip_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; .ci/run should have installed them")
        pytest.skip(missing)
    import orjson

    from tests.e2e.support import produce
    from tollguard.app.topics import ensure_tollguard_topics

    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=2)
    ensure_tollguard_topics(settings)

    def records(*signals: dict) -> list[tuple[bytes, bytes]]:
        return [(s["line_id"].encode(), orjson.dumps(s)) for s in signals]

    # The compacted list a new enforcer starts from: one live block, one shadow
    # block, one block already lifted (latest record per line wins).
    produce(
        kafka_bootstrap,
        settings.topic_blocks,
        records(
            _signal("b-old", "block", "pbx-old"),
            _signal("b-shadow", "block", "pbx-shadow", mode="shadow"),
            _signal("b-lifted", "block", "pbx-lifted"),
            _signal("u-lifted", "unblock", "pbx-lifted"),
        ),
    )
    loop = Loop(tmp_path, settings)
    try:
        # Kamailio is not up yet: the enforcer must wait and retry, not die.
        enforcer = loop.start_enforcer(wait_up=False)
        web = loop.enforcer_web
        wait_for(
            "the enforcer to rebuild one block and see Kamailio down",
            lambda: (
                metric(web, "tollguard_enforcer_active_blocks") == 1
                and metric(web, "tollguard_enforcer_kamailio_up") == 0
            ),
            30,
            enforcer,
        )
        kamailio = loop.start_kamailio()

        def table() -> set[str]:
            answer = rpc(loop.http_port, "htable.dump", "tgblock")
            return {item["name"] for slot in answer.get("result") or [] for item in slot["slot"]}

        wait_for("the rebuilt block in Kamailio", lambda: table() == {"pbx-old"}, 30, enforcer)
        item = rpc(loop.http_port, "htable.get", "tgblock", "pbx-old")["result"]["item"]
        assert item["value"] == "international"

        # Live signals: a block, a duplicate of it, then its unblock.
        produce(
            kafka_bootstrap,
            settings.topic_control,
            records(_signal("b-new", "block", "pbx-new"), _signal("b-new", "block", "pbx-new")),
        )
        wait_for("the new block", lambda: table() == {"pbx-old", "pbx-new"}, 30, enforcer)
        produce(
            kafka_bootstrap, settings.topic_control, records(_signal("u-new", "unblock", "pbx-new"))
        )
        wait_for("the unblock", lambda: table() == {"pbx-old"}, 30, enforcer)
        assert (
            metric(web, "tollguard_enforcer_signals_total", action="block", outcome="duplicate")
            == 1
        )

        # Kamailio restarts with an empty htable: the enforcer puts the block back.
        kamailio.stop()
        loop.start_kamailio()
        wait_for("the re-sync after restart", lambda: table() == {"pbx-old"}, 30, enforcer)
        assert metric(web, "tollguard_enforcer_resyncs_total") >= 2
        assert enforcer.running()
    finally:
        loop.stop()
