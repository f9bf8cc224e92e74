"""The Faust application: consume call events, publish control signals.

Faust supplies the consumer group, partition assignment, the web server and
the worker lifecycle; the detection itself is `BatchProcessor`. Events are
read as raw bytes in batches (`take_events`): Faust's per-record model
decoding and per-event agent step would cost more than the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import faust
from faust.types import EventT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, Outputs, RawRecord
from tollguard.config import Settings
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.rulepacks import load_pack

log = logging.getLogger("tollguard.worker")
# aiohttp wants the charset apart from the content type.
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


def _now_ms() -> int:
    return int(time.time() * 1000)


def create_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    metrics_: Metrics = metrics or Metrics()
    pack = load_pack(_rules_path(settings.rules))
    processor = BatchProcessor(
        pack,
        load_default_dial_plans(),
        DestinationTable.load_default(),
        metrics_,
        lateness_ms=settings.lateness_s * 1000,
        max_event_bytes=settings.max_event_bytes,
    )
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        web_host=settings.web_host,
        web_port=settings.web_port,
        datadir=settings.data_dir,
        # Half the session timeout is what a new group waits to join.
        broker_session_timeout=10,
        broker_heartbeat_interval=3,
        producer_acks=-1,
        producer_linger_ms=1,
        stream_wait_empty=False,
        topic_partitions=settings.event_partitions,
        key_serializer="raw",
        value_serializer="raw",
        consumer_max_fetch_size=4 * 1024 * 1024,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
    )
    events = app.topic(settings.topic_events, key_type=bytes, value_type=bytes)
    control = app.topic(settings.topic_control, key_type=bytes, value_type=bytes)
    blocks = app.topic(settings.topic_blocks, key_type=bytes, value_type=bytes)
    deadletter = app.topic(settings.topic_deadletter, key_type=bytes, value_type=bytes)

    async def publish(out: Outputs) -> None:
        pending: list[Awaitable[Any]] = []
        for key, value in out.deadletter:
            pending.append(await deadletter.send(key=key, value=value))
        for key, value in out.control:
            pending.append(await control.send(key=key, value=value))
        for key, value in out.blocks:
            pending.append(await blocks.send(key=key, value=value))
        if pending:
            # Offsets are acked only after what the batch implies is on the broker.
            await asyncio.gather(*pending)

    @app.agent(events, name="tollguard.detect")
    async def detect(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take_events(  # type: ignore[attr-defined]
            settings.batch_size, within=settings.batch_within_s
        ):
            consumed = time.monotonic()
            out = processor.process(_records(batch), _now_ms())
            await publish(out)
            if out.signals:
                latency = time.monotonic() - consumed
                for _ in out.signals:
                    metrics_.decision_latency.observe(latency)
                for s in out.signals:
                    log.info(
                        "signal %s %s line=%s rule=%s: %s",
                        s.action,
                        s.severity,
                        s.line_id,
                        s.rule_id,
                        s.reason,
                    )

    @app.timer(settings.expiry_interval_s)  # type: ignore[untyped-decorator]
    async def expire_blocks() -> None:
        out = processor.expire(_now_ms())
        await publish(out)
        for s in out.signals:
            log.info("signal %s line=%s rule=%s: %s", s.action, s.line_id, s.rule_id, s.reason)
        processor.refresh_gauges()

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(metrics_.registry), content_type=METRICS_CONTENT_TYPE)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        processor.drop_partitions(
            tp.partition for tp in revoked if tp.topic == settings.topic_events
        )

    app.tollguard_processor = processor  # type: ignore[attr-defined]
    app.tollguard_metrics = metrics_  # type: ignore[attr-defined]
    return app


def _records(batch: Sequence[EventT[bytes]]) -> list[RawRecord]:
    return [
        RawRecord(m.topic, m.partition, m.offset, m.key, m.value)
        for m in (e.message for e in batch)
    ]


def _rules_path(rules: str) -> Any:
    from pathlib import Path

    path = Path(rules)
    if path.is_dir():
        path = path / "default.yaml"
    return path
