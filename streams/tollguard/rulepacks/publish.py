"""Rule packs on Kafka: `tollguard rules push` and what workers read back.

A pack travels as its YAML text, unchanged, keyed by pack name on the
compacted `tollguard.rules` topic, so the topic holds the newest text of each
pack and a worker validates exactly what an analyst checked. Every worker
reads the whole topic (no consumer group): rule packs are broadcast, not
shared out like call events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tollguard.engine.rules import RulePack
from tollguard.rulepacks.loader import PackProblem, RulePackError, load_pack_text

log = logging.getLogger("tollguard.rules")


@dataclass(frozen=True, slots=True)
class PackRecord:
    """One record of the rules topic, decoded: a pack, or why it was rejected."""

    offset: int
    key: str
    pack: RulePack | None
    problems: tuple[PackProblem, ...] = ()


def decode_record(key: bytes | None, value: bytes | None, offset: int) -> PackRecord | None:
    """A rules-topic record as a validated pack or a rejection; None for a tombstone."""
    name = (key or b"").decode("utf-8", errors="replace") or "(no key)"
    if value is None:
        return None
    source = f"tollguard.rules[{name}@{offset}]"
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return PackRecord(offset, name, None, (PackProblem(source, 1, "the pack is not UTF-8"),))
    try:
        return PackRecord(offset, name, load_pack_text(text, source))
    except RulePackError as exc:
        return PackRecord(offset, name, None, tuple(exc.problems))


def newest_valid(records: Iterable[PackRecord]) -> PackRecord | None:
    best: PackRecord | None = None
    for record in records:
        if record.pack is not None and (best is None or record.offset > best.offset):
            best = record
    return best


def _client_config(settings: Any) -> dict[str, Any]:
    from tollguard.kafka_security import kafka_python_config

    return kafka_python_config(settings)


def read_rules_topic(settings: Any, timeout_s: float = 10.0) -> tuple[list[PackRecord], int]:
    """Every record of the rules topic (partition 0) and the offset after the last."""
    from kafka import KafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    consumer = KafkaConsumer(
        **_client_config(settings),
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    try:
        tp = TopicPartition(settings.topic_rules, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = int(consumer.end_offsets([tp])[tp])
        records: list[PackRecord] = []
        if end == 0:
            return records, 0
        for msg in consumer:
            decoded = decode_record(msg.key, msg.value, msg.offset)
            if decoded is not None:
                records.append(decoded)
            if msg.offset + 1 >= end:
                break
        return records, end
    finally:
        consumer.close()


def push_pack(settings: Any, text: str, source: str = "<pack>") -> RulePack:
    """Validate `text` and publish it on the rules topic, keyed by its pack name."""
    from kafka import KafkaProducer

    pack = load_pack_text(text, source)  # raises RulePackError: nothing is sent
    producer = KafkaProducer(**_client_config(settings), acks="all")
    try:
        future = producer.send(settings.topic_rules, key=pack.name.encode(), value=text.encode())
        future.get(timeout=30)
        producer.flush(30)
    finally:
        producer.close()
    return pack
