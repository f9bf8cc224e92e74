"""`tollguard ingest pack` on a real broker: envelopes land on the partition the events were on.

Single events keyed by line go to a 4-partition input topic (Kafka's default
partitioner), plus values that must not be packed: not JSON, truncated JSON,
a tombstone, and an event written to a partition its line does not hash to.
The packer runs; the output topic, read partition by partition, must hold
every input event exactly once, in its input partition's order, inside an
envelope on the same partition number, the unpackable values alone and
unchanged (the misplaced event on its line's own partition), and the group's
committed offsets must cover the whole input. A second run on the same group
forwards only what was produced since.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from kafka import KafkaProducer  # type: ignore[import-untyped]

from tests.conftest import TopicFactory
from tollguard.adapters.packer import PackerError, PackerMetrics, partition_for, run_packer
from tollguard.config import Settings, load_settings
from tollguard.testing.worker_process import run_cli

pytestmark = pytest.mark.integration

PARTITIONS = 4
LINES = [f"pbx-{i:03d}" for i in range(40)]


def _settings(bootstrap: str, events_topic: str) -> Settings:
    return load_settings(
        env={},
        broker=f"kafka://{bootstrap}",
        app_id=f"tollguard-test-{uuid.uuid4().hex[:8]}",
        topic_events=events_topic,
    )


def _event(i: int) -> dict[str, Any]:
    line = LINES[i % len(LINES)]
    ts = 1_795_910_400_000 + i * 1000
    return {"type": "setup", "call_id": f"c{i}", "ts": ts, "line_id": line, "callee": "+23276"}


def _produce(
    bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None, int | None]]
) -> list[tuple[int, bytes | None]]:
    """Produce (key, value, partition or None) in order; returns where each landed."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=k, value=v, partition=p) for k, v, p in items]
        producer.flush(30)
        return [
            (meta.partition, v)
            for meta, (_, v, _) in zip((f.get(30) for f in futures), items, strict=True)
        ]
    finally:
        producer.close()


async def _read(
    bootstrap: str, topic: str, count: int, timeout: float = 60
) -> dict[int, list[bytes | None]]:
    """Every record value per partition, in order, until `count` events are seen."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: dict[int, list[bytes | None]] = {p: [] for p in range(PARTITIONS)}
        seen = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while seen < count and loop.time() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                for r in records:
                    out[tp.partition].append(r.value)
                    seen += _events_in(r.value)
        return out
    finally:
        await consumer.stop()


def _events_in(value: bytes | None) -> int:
    if value is not None and value.startswith(b"["):
        try:
            return len(orjson.loads(value))
        except orjson.JSONDecodeError:
            return 1
    return 1


async def _pack_until(
    settings: Settings, input_topic: str, count: int, metrics: PackerMetrics
) -> dict[int, list[bytes | None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_packer(settings, input_topic, 7, 5, stop, metrics=metrics)  # small envelopes
    )
    try:
        return await _read(settings.bootstrap, settings.topic_events, count)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _committed(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, group_id=f"{settings.app_id}-packer"
    )
    await consumer.start()
    try:
        out = {}
        for p in range(PARTITIONS):
            out[p] = await consumer.committed(TopicPartition(topic, p)) or 0
        return out
    finally:
        await consumer.stop()


def _unpack(records: list[bytes | None]) -> list[tuple[str, Any]]:
    """An output partition as ("event", dict) per packed event and ("alone", raw) otherwise."""
    out: list[tuple[str, Any]] = []
    for value in records:
        parsed = None
        if value is not None and value.startswith(b"["):
            parsed = orjson.loads(value)
        if isinstance(parsed, list):
            out.extend(("event", item) for item in parsed)
        else:
            out.append(("alone", value))
    return out


def test_envelopes_keep_partition_and_order(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    input_topic = topic_factory(PARTITIONS, prefix="calls.raw")
    settings = _settings(kafka_bootstrap, topic_factory(PARTITIONS, prefix="calls.events"))
    events = [_event(i) for i in range(600)]
    misplaced = _event(10_000)
    home = partition_for(misplaced["line_id"], PARTITIONS)
    wrong = (home + 1) % PARTITIONS
    items: list[tuple[bytes | None, bytes | None, int | None]] = [
        (e["line_id"].encode(), orjson.dumps(e), None) for e in events
    ]
    odd: list[tuple[bytes | None, bytes | None, int | None]] = [
        (b"pbx-001", b"not json", None),
        (b"pbx-002", b'{"line_id": "pbx-002", "call_id": "cut', None),
        (b"pbx-003", None, None),
        (misplaced["line_id"].encode(), orjson.dumps(misplaced), wrong),
    ]
    # The odd records go in the middle, between good events of the same partitions.
    items[300:300] = odd
    landed = _produce(kafka_bootstrap, input_topic, items)
    for (partition, _), (key, _, _) in zip(landed, items, strict=True):
        if key is not None and key != misplaced["line_id"].encode():
            assert partition == partition_for(key.decode(), PARTITIONS)

    metrics = PackerMetrics()
    output = asyncio.run(_pack_until(settings, input_topic, len(items), metrics))

    moved = ("alone", orjson.dumps(misplaced))
    for p in range(PARTITIONS):
        got = _unpack(output[p])
        # Sent alone to its line's partition; where it falls among that partition's
        # own events depends on timing, so only its presence is checked.
        assert got.count(moved) == (1 if p == home else 0)
        got = [x for x in got if x != moved]
        expected: list[tuple[str, Any]] = []
        for partition, value in landed:
            if partition != p or value == moved[1]:
                continue
            parsed = None
            if value is not None:
                with contextlib.suppress(orjson.JSONDecodeError):
                    parsed = orjson.loads(value)
            expected.append(("event", parsed) if isinstance(parsed, dict) else ("alone", value))
        assert got == expected, f"partition {p}"
        for _, item in (x for x in got if x[0] == "event"):
            assert partition_for(item["line_id"], PARTITIONS) == p
    alone = [v for p in range(PARTITIONS) for kind, v in _unpack(output[p]) if kind == "alone"]
    assert sorted(alone, key=repr) == sorted([v for _, v, _ in odd], key=repr)

    def sample(name: str, **labels: str) -> float:
        value = metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    assert sample("tollguard_packer_events_total") == len(items)
    assert sample("tollguard_packer_passthrough_total", reason="invalid") == 3
    assert sample("tollguard_packer_passthrough_total", reason="misplaced") == 1
    envelopes = sum(1 for p in range(PARTITIONS) for v in output[p] if _events_in(v) > 1)
    assert sample("tollguard_packer_envelopes_total") >= envelopes > 0
    sizes = [_events_in(v) for p in range(PARTITIONS) for v in output[p]]
    assert max(sizes) <= 7

    # Everything read was acknowledged, then committed.
    per_partition = [sum(1 for partition, _ in landed if partition == p) for p in range(4)]
    committed = asyncio.run(_committed(settings, input_topic))
    assert committed == dict(enumerate(per_partition))

    # A second run on the same group forwards only the new events.
    more = [_event(i) for i in range(600, 650)]
    _produce(
        kafka_bootstrap,
        input_topic,
        [(e["line_id"].encode(), orjson.dumps(e), None) for e in more],
    )
    again = PackerMetrics()
    total = len(items) + len(more)
    output = asyncio.run(_pack_until(settings, input_topic, total, again))
    packed = [e for p in range(PARTITIONS) for kind, e in _unpack(output[p]) if kind == "event"]
    assert sorted(e["call_id"] for e in packed) == sorted(e["call_id"] for e in [*events, *more])
    assert again.registry.get_sample_value("tollguard_packer_events_total") == len(more)


def test_partition_counts_must_match(kafka_bootstrap: str, topic_factory: TopicFactory) -> None:
    input_topic = topic_factory(2, prefix="calls.raw")
    settings = _settings(kafka_bootstrap, topic_factory(PARTITIONS, prefix="calls.events"))
    with pytest.raises(PackerError, match="same count"):
        asyncio.run(run_packer(settings, input_topic, 500, 5, asyncio.Event()))

    # The command says the same, with exit status 1.
    result = run_cli(settings, "ingest", "pack", "--input-topic", input_topic, "--web-port", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"input topic {input_topic!r} has 2 partitions" in result.stderr
    assert f"{settings.topic_events!r} has 4" in result.stderr
