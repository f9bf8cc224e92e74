"""State survives kill -9, partitions move with their state, a broker restart loses nothing.

All against the real Apache Kafka broker and real `tollguard worker` processes.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner.default import murmur2  # type: ignore[import-untyped]

from tests.e2e.support import (
    WorkerProcess,
    events_as_records,
    isolated_settings,
    produce,
    read_until,
)
from tollguard.brokers.apache import ApacheKafkaBroker, tools_available
from tollguard.config import Settings

pytestmark = pytest.mark.e2e

PACK = """
pack: faults
version: "t-1"
dial_plan: JP
rules:
  - id: sl-calls
    kind: count
    match: {international: true, prefixes: ["+232"]}
    window: 1h
    warning: 3
    critical: 10
    ttl: 2h
"""
PARTITIONS = 4


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def attack_calls(line: str, start: int, first: int, last: int) -> list[tuple[bytes, bytes]]:
    """Attack calls number `first`..`last` (1-based), one every 20 s of event time."""
    events = (
        {
            "call_id": f"{line}-atk-{n}",
            "ts": start + n * 20_000,
            "line_id": line,
            "callee": f"01023276{100000 + n}",
        }
        for n in range(first, last + 1)
    )
    return list(events_as_records(events))


def background_calls(start: int, n: int, tag: str) -> list[tuple[bytes, bytes]]:
    events = (
        {
            "call_id": f"bg-{tag}-{i}",
            "ts": start + i * 1000,
            "line_id": f"home-{i % 25}",
            "callee": f"03{10000000 + i}",
        }
        for i in range(n)
    )
    return list(events_as_records(events))


def settings_for(bootstrap: str, tmp_path: Path) -> Settings:
    rules = tmp_path / "faults.yaml"
    rules.write_text(PACK)
    return isolated_settings(bootstrap, tmp_path, partitions=PARTITIONS, rules=str(rules))


def counted(*workers: WorkerProcess) -> float:
    return sum(w.metric("tollguard_events_total", type="setup") for w in workers)


def wait_for(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def assert_consistent_ids(signals: list[dict[str, Any]]) -> None:
    """A signal id seen twice must mean the same decision (only issued_at may differ)."""
    by_id: dict[str, dict[str, Any]] = {}
    for s in signals:
        body = {k: v for k, v in s.items() if k != "issued_at"}
        assert by_id.setdefault(s["signal_id"], body) == body, f"signal {s['signal_id']} changed"


def test_kill_9_mid_attack_then_restart_keeps_counts_and_the_block(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, tmp_path)
    line = "pbx-kill-9"
    start = int(time.time() * 1000) - 3_600_000
    worker = WorkerProcess(settings, tmp_path / "w1.log").start()
    try:
        sent = produce(
            kafka_bootstrap,
            settings.topic_events,
            background_calls(start, 100, "a") + attack_calls(line, start, 1, 7),
        )
        wait_for("7 attack calls counted", lambda: counted(worker) >= sent)
        time.sleep(2 * settings.commit_interval_s + 0.5)  # at least one checkpoint
    finally:
        worker.kill()  # SIGKILL: no shutdown hooks, no final commit

    worker = WorkerProcess(settings, tmp_path / "w2.log").start()
    try:
        produce(kafka_bootstrap, settings.topic_events, attack_calls(line, start, 8, 12))
        signals = read_until(
            kafka_bootstrap,
            settings.topic_control,
            lambda seen: any(s["action"] == "block" for s in seen),
        )
        blocks = [s for s in signals if s["action"] == "block"]
        assert blocks, worker.log_tail()
        # Counting went on from 7: the 10th call blocks, not the 10th after the restart.
        assert _ms(blocks[0]["event_ts"]) == start + 10 * 20_000
        assert blocks[0]["evidence"]["value"] == 10
        wait_for("the restored line is tracked", lambda: counted(worker) >= 5)

        # Kill again while blocked: the block survives, and is not issued a second time.
        time.sleep(2 * settings.commit_interval_s + 0.5)
        worker.kill()
        worker = WorkerProcess(settings, tmp_path / "w3.log").start()
        produce(kafka_bootstrap, settings.topic_events, attack_calls(line, start, 13, 30))
        wait_for("the last attack calls counted", lambda: counted(worker) >= 18)
        assert worker.metric("tollguard_active_blocks") >= 0
        time.sleep(2)
        signals = read_until(kafka_bootstrap, settings.topic_control, lambda seen: False, 5)
    finally:
        worker.stop()
    assert_consistent_ids(signals)
    block_ids = {s["signal_id"] for s in signals if s["action"] == "block"}
    assert len(block_ids) == 1, f"one episode, {len(block_ids)} blocks"
    assert {s["line_id"] for s in signals} == {line}


def line_for_partition(partition: int, stem: str) -> str:
    for i in range(10_000):
        line = f"{stem}-{i}"
        if (murmur2(line.encode()) & 0x7FFFFFFF) % PARTITIONS == partition:
            return line
    raise AssertionError("no line id for that partition")


def test_surviving_worker_takes_over_partitions_with_their_state(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, tmp_path)
    lines = [line_for_partition(p, "pbx-move") for p in range(PARTITIONS)]
    start = int(time.time() * 1000) - 3_600_000
    a = WorkerProcess(settings, tmp_path / "a.log").start()
    b = WorkerProcess(settings, tmp_path / "b.log").start()
    try:
        wait_for(
            "both workers own partitions",
            lambda: (
                a.metric("tollguard_assigned_partitions") > 0
                and b.metric("tollguard_assigned_partitions") > 0
            ),
            timeout=90,
        )
        first = [r for line in lines for r in attack_calls(line, start, 1, 7)]
        sent = produce(kafka_bootstrap, settings.topic_events, first)
        wait_for("first attack calls counted", lambda: counted(a, b) >= sent)
        time.sleep(2 * settings.commit_interval_s + 0.5)
        a.kill()
        rest = [r for line in lines for r in attack_calls(line, start, 8, 12)]
        produce(kafka_bootstrap, settings.topic_events, rest)
        signals = read_until(
            kafka_bootstrap,
            settings.topic_control,
            lambda seen: {s["line_id"] for s in seen if s["action"] == "block"} == set(lines),
            timeout=90,
        )
    finally:
        a.stop()
        b.stop()
    blocks = {s["line_id"]: s for s in signals if s["action"] == "block"}
    assert set(blocks) == set(lines), b.log_tail()
    for line, block in blocks.items():
        assert _ms(block["event_ts"]) == start + 10 * 20_000, f"{line} counted from zero"
    assert_consistent_ids(signals)


@pytest.mark.skipif(tools_available() is not None, reason="needs java and mvn for its own broker")
def test_broker_restart_while_events_flow_loses_nothing(tmp_path: Path) -> None:
    broker = ApacheKafkaBroker(tmp_path / "kafka")
    bootstrap = broker.start()
    worker: WorkerProcess | None = None
    try:
        settings = settings_for(bootstrap, tmp_path)
        worker = WorkerProcess(settings, tmp_path / "worker.log").start()
        total = 6000
        records = background_calls(int(time.time() * 1000) - 600_000, total, "flow")
        acked: dict[str, int] = defaultdict(int)

        def send() -> None:
            from kafka import KafkaProducer  # type: ignore[import-untyped]

            producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                acks="all",
                retries=1_000_000,
                retry_backoff_ms=200,
                max_in_flight_requests_per_connection=1,
                request_timeout_ms=5_000,
                delivery_timeout_ms=120_000,
            )
            for i, (key, value) in enumerate(records):
                producer.send(settings.topic_events, key=key, value=value).add_callback(
                    lambda _md: acked.__setitem__("n", acked["n"] + 1)
                )
                if i % 200 == 0:
                    time.sleep(0.05)
            producer.flush(120)
            producer.close()

        sender = threading.Thread(target=send)
        sender.start()
        wait_for("events flowing", lambda: counted(worker) > 500, timeout=60)
        broker.restart()
        sender.join(180)
        assert not sender.is_alive(), "producer did not finish"
        assert acked["n"] == total
        wait_for(
            "every produced event counted",
            lambda: counted(worker) + worker.metric("tollguard_events_duplicate_total") >= total,
            timeout=120,
        )
        assert worker.proc is not None and worker.proc.poll() is None
        # Producer retries across the restart may write an event twice; it counts once.
        assert counted(worker) == total
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
