"""`tollguard ingest hep`: a HEPv3 UDP collector producing call events to Kafka.

The UDP handler only parses and queues (it must never block or raise); one
task drains the queue into an aiokafka producer, which batches by linger time
and size, keyed by line so a line's events stay ordered in one partition.
When Kafka cannot keep up the bounded queue fills and packets are dropped with
reason `backpressure`: losing mirrored copies is better than stalling or
exhausting memory, and the drop is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tollguard.adapters.hep import MAX_PACKET, HepError, LineSource, SipEventMapper, parse_hep
from tollguard.config import Settings

log = logging.getLogger("tollguard.ingest.hep")


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.packets = Counter("tollguard_hep_packets_total", "HEP datagrams received", registry=r)
        self.dropped = Counter(
            "tollguard_hep_dropped_total",
            "HEP datagrams dropped, by reason",
            ["reason"],
            registry=r,
        )
        self.events = Counter(
            "tollguard_hep_events_total", "Call events produced, by type", ["type"], registry=r
        )
        self.produce_errors = Counter(
            "tollguard_hep_produce_errors_total", "Events Kafka did not accept", registry=r
        )
        self.queue = Gauge(
            "tollguard_hep_queue_events", "Events waiting to be produced", registry=r
        )
        self.calls = Gauge(
            "tollguard_hep_tracked_calls", "Calls whose line the collector remembers", registry=r
        )


@dataclass
class HepIngest:
    """Packets in, events out; the pure part of the collector (no sockets)."""

    mapper: SipEventMapper
    metrics: CollectorMetrics
    queue: asyncio.Queue[dict[str, Any]]

    def handle(self, data: bytes, now_ms: int) -> None:
        self.metrics.packets.inc()
        try:
            if len(data) > MAX_PACKET:
                raise HepError("oversize", f"{len(data)} bytes")
            event = self.mapper.feed(parse_hep(data), now_ms)
        except HepError as exc:
            self._drop(exc.reason)
            return
        except Exception as exc:  # the collector never dies on input
            # The message may quote SIP text (numbers): only its type below debug.
            log.warning("unexpected %s on a HEP packet; dropped", type(exc).__name__)
            log.debug("HEP packet error", exc_info=True)
            self._drop("error")
            return
        if event is None:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drop("backpressure")

    def _drop(self, reason: str) -> None:
        self.metrics.dropped.labels(reason=reason).inc()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, ingest: HepIngest) -> None:
        self.ingest = ingest

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.ingest.handle(data, int(time.time() * 1000))

    def error_received(self, exc: Exception) -> None:
        log.warning("UDP error: %s", exc)


def _parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"tollguard: listen address must be host:port, not {listen!r}")
    return host.strip("[]"), int(port)


async def _drain(
    queue: asyncio.Queue[dict[str, Any]],
    producer: Any,
    topic: str,
    metrics: CollectorMetrics,
    batch: int,
) -> None:
    """Send queued events; wait on the broker once per batch, not per event."""
    while True:
        first = await queue.get()
        items = [first]
        while len(items) < batch and not queue.empty():
            items.append(queue.get_nowait())
        metrics.queue.set(queue.qsize())
        futures = []
        for event in items:
            key = str(event["line_id"]).encode()
            try:
                futures.append(
                    (event["type"], await producer.send(topic, orjson.dumps(event), key=key))
                )
            except Exception as exc:
                metrics.produce_errors.inc()
                log.warning("produce failed: %s", exc)
        for kind, fut in futures:
            try:
                await fut
                metrics.events.labels(type=kind).inc()
            except Exception as exc:
                metrics.produce_errors.inc()
                log.warning("produce failed: %s", exc)


def _producer(settings: Settings) -> Any:
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    from tollguard.kafka_security import aiokafka_config

    return AIOKafkaProducer(
        **aiokafka_config(settings),
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        enable_idempotence=False,
    )


async def run_collector(
    settings: Settings,
    listen: str,
    line_source: str,
    web_port: int | None,
    queue_size: int = 100_000,
) -> None:
    metrics = CollectorMetrics()
    if web_port:
        start_http_server(web_port, addr=settings.web_host, registry=metrics.registry)
    mapper = SipEventMapper(LineSource(line_source))
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
    ingest = HepIngest(mapper, metrics, queue)
    host, port = _parse_listen(listen)
    producer = _producer(settings)
    await producer.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Protocol(ingest), local_addr=(host, port)
    )
    drain = asyncio.create_task(
        _drain(queue, producer, settings.topic_events, metrics, settings.batch_size)
    )
    log.info(
        "collecting HEP on udp %s:%d, line from %s, producing to %s",
        host,
        port,
        line_source,
        settings.topic_events,
    )
    print(f"tollguard ingest hep: listening on udp {host}:{port}", flush=True)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            metrics.calls.set(mapper.tracked_calls())
            if drain.done():
                drain.result()  # surface a crash of the drain task
    finally:
        transport.close()
        # Give queued events a bounded chance to reach Kafka.
        deadline = time.monotonic() + 5
        while not queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        await producer.stop()
