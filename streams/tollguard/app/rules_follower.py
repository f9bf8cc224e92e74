"""Hot reload: follow the compacted `tollguard.rules` topic and swap packs in place.

At start-up (`initial_pack`) the worker reads the whole topic and uses the
newest valid pack on it, else the pack file of TOLLGUARD_RULES. While it runs,
`RulesFollower` reads every new record (no consumer group: each worker needs
every pack), validates it with the same loader as `tollguard rules check`, and
applies it with `BatchProcessor.set_pack` between two batches. A pack that
fails validation, or names a dial plan the worker does not have, is logged
with every reason and counted in `tollguard_rules_rejected_total`; the pack in
force stays. Engines keep the state of rules whose id and kind survive.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from mode import Service

from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor
from tollguard.config import Settings
from tollguard.engine.rules import RulePack
from tollguard.kafka_security import aiokafka_config
from tollguard.rulepacks.publish import PackRecord, decode_record, newest_valid, read_rules_topic

log = logging.getLogger("tollguard.rules")


def log_rejected(record: PackRecord, metrics: Metrics | None) -> None:
    reasons = "; ".join(str(p) for p in record.problems) or "unusable pack"
    log.warning(
        "rejected rule pack %r at offset %d, keeping the one in force: %s",
        record.key,
        record.offset,
        reasons,
    )
    if metrics is not None:
        metrics.rules_rejected.inc()


def initial_pack(
    settings: Settings, fallback: RulePack, metrics: Metrics | None = None
) -> tuple[RulePack, int]:
    """The newest valid pack on the rules topic (else `fallback`) and where to follow from."""
    try:
        records, end = read_rules_topic(settings)
    except Exception as exc:
        log.warning("cannot read %s (%s); using %s", settings.topic_rules, exc, settings.rules)
        return fallback, 0
    best = newest_valid(records)
    for record in records:
        if record.pack is None and (best is None or record.offset > best.offset):
            log_rejected(record, metrics)
    if best is None or best.pack is None:
        return fallback, end
    log.info(
        "rule pack %s version %s from %s offset %d",
        best.pack.name,
        best.pack.version,
        settings.topic_rules,
        best.offset,
    )
    return best.pack, end


class RulesFollower(Service):
    def __init__(
        self, settings: Settings, processor: BatchProcessor, metrics: Metrics, start_offset: int
    ) -> None:
        super().__init__()
        self.settings = settings
        self.processor = processor
        self.metrics = metrics
        self.start_offset = start_offset
        self.consumer: AIOKafkaConsumer | None = None

    async def on_start(self) -> None:
        config: dict[str, Any] = aiokafka_config(self.settings)
        self.consumer = AIOKafkaConsumer(**config, group_id=None, enable_auto_commit=False)
        await self.consumer.start()
        tp = TopicPartition(self.settings.topic_rules, 0)
        self.consumer.assign([tp])
        self.consumer.seek(tp, self.start_offset)
        self.add_future(self._follow())

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def _follow(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        while not self.should_stop:
            try:
                fetched = await consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep following; the pack in force stays
                log.warning("reading %s failed: %s", self.settings.topic_rules, exc)
                await asyncio.sleep(1.0)
                continue
            for batch in fetched.values():
                for msg in batch:
                    self.apply(decode_record(msg.key, msg.value, msg.offset))

    def apply(self, record: PackRecord | None) -> bool:
        """Apply one decoded record; False if it was rejected (or a tombstone)."""
        if record is None:
            return False
        if record.pack is None:
            log_rejected(record, self.metrics)
            return False
        try:
            self.processor.set_pack(record.pack)
        except ValueError as exc:
            log.warning(
                "rejected rule pack %r at offset %d, keeping the one in force: %s",
                record.key,
                record.offset,
                exc,
            )
            self.metrics.rules_rejected.inc()
            return False
        log.info(
            "applied rule pack %s version %s (%d rules) from offset %d",
            record.pack.name,
            record.pack.version,
            len(record.pack.rules),
            record.offset,
        )
        return True
