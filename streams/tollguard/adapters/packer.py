"""`tollguard ingest pack`: single call events in, envelopes out, partition for partition.

A switch that publishes one call event per Kafka record makes every consumer
pay the client's per-record cost once per event. The packer reads those
single-event records from an input topic (default `calls.raw`) and writes
*envelopes* (one record whose value is a JSON array of events) to the events
topic, to the **same partition number** it read them from. When the input was
partitioned like `calls.events` (key `line_id`, Kafka's default murmur2
partitioner, same partition count, checked at start), every line's events
stay on the partition the detector keeps that line's state on.

Packing, per input partition (`Packer`, pure: no Kafka, no clock): values are
buffered and sent as `[v1,v2,...]` when `max_events` are buffered, when the
next value would take the envelope past `max_bytes`, or `linger` after the
first buffered value, whichever comes first. Values are copied byte for byte,
never re-encoded. A value goes on its own, unchanged and in order, instead of
into an envelope when packing it could harm other events or the line's state:

* `invalid`: not one complete JSON object (a tombstone, truncated or
  concatenated JSON, bad UTF-8, ...). Joined into an array such a value would
  make the whole envelope unreadable, or split into two events, so the check
  uses the detector's own JSON parser (about 1 us per event); on its own the
  detector dead-letters it with its precise reason, as before.
* `oversize`: larger than `max_event_bytes`, or nested as deep as the JSON
  parser's limit (the array adds one level); the detector rejects it alone.
* `misplaced`: its `line_id` hashes (murmur2) to another partition, i.e. the
  input was not partitioned like the events topic. It is sent alone to the
  partition its line belongs to, so the line's state stays in one place, and
  a warning says the input's producers should key by `line_id` with the
  murmur2 partitioner (librdkafka's default, CRC32, is not murmur2).

Delivery (`run_packer`): an input offset is committed only after the broker
acknowledged (acks=all) every record holding the events before it. If a send
fails after the client's own retries, the packer stops with an error; when
restarted (a Deployment does that) it re-reads from the last commit. At least
once: the detector counts a repeated `(call_id, type)` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tollguard.config import Settings
from tollguard.kafka_security import aiokafka_config

log = logging.getLogger("tollguard.ingest.pack")

DEFAULT_INPUT_TOPIC: Final = "calls.raw"
DEFAULT_MAX_EVENTS: Final = 500
DEFAULT_LINGER_MS: Final = 5.0
# The detector takes at most this many events per envelope (engine.events).
MAX_ENVELOPE_EVENTS: Final = 10_000
# Under the producer's (and the broker's default) 1 MiB request limit, with room
# for the record's key and headers.
DEFAULT_MAX_BYTES: Final = 900_000
# orjson parses at most 1024 levels; a value at that depth parses alone but not
# inside an array. Such a value has at least 1024 brackets, so only long values
# are counted.
_DEEP_BRACKETS: Final = 1000
_DEEP_MIN_BYTES: Final = 2 * _DEEP_BRACKETS
PASSTHROUGH_REASONS: Final = ("invalid", "oversize", "misplaced")


def partition_for(line_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key `line_id` (UTF-8)."""
    return int((murmur2(line_id.encode()) & 0x7FFFFFFF) % partitions)


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce: an envelope, or a value that goes on its own."""

    source: int  # input partition the events were read from
    partition: int  # output partition
    key: bytes | None
    value: bytes | None
    events: int
    first_offset: int  # input offsets [first_offset, next_offset) are in this record
    next_offset: int
    reason: str | None = None  # None for an envelope, else why the value went alone


@dataclass(slots=True)
class _Buffer:
    started: float
    key: bytes | None
    first_offset: int
    next_offset: int = 0
    size: int = 1  # "[" and "]" less one comma, plus each value and its comma
    values: list[bytes] = field(default_factory=list)


class Packer:
    """Decides what to send and when; the caller produces the outputs in order.

    Time is a monotonic clock in seconds, passed in. Every method returns the
    outputs to send in that order: an envelope is always sent before a record
    that was read after its events.
    """

    def __init__(
        self,
        partitions: int,
        max_events: int = DEFAULT_MAX_EVENTS,
        linger_s: float = DEFAULT_LINGER_MS / 1000,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_event_bytes: int = 64 * 1024,
        line_cache: int = 200_000,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if not 1 <= max_events <= MAX_ENVELOPE_EVENTS:
            raise ValueError(f"max_events must be between 1 and {MAX_ENVELOPE_EVENTS}")
        if linger_s < 0:
            raise ValueError("linger must not be negative")
        self.partitions = partitions
        self.max_events = max_events
        self.linger_s = linger_s
        self.max_bytes = max_bytes
        # A value that could not fit in an envelope of its own goes alone.
        self.max_event_bytes = min(max_event_bytes, max_bytes - 2)
        self._buffers: dict[int, _Buffer] = {}
        self._lines: dict[str, int] = {}
        self._line_cache = line_cache

    def add(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, now: float
    ) -> list[Output]:
        """Take the record read at `partition`/`offset`."""
        reason, target = self._check(partition, value)
        buf = self._buffers.get(partition)
        if reason is not None:
            out = [] if buf is None else [self._emit(partition)]
            out.append(Output(partition, target, key, value, 1, offset, offset + 1, reason))
            return out
        assert value is not None
        out = []
        if buf is not None and buf.size + len(value) + 1 > self.max_bytes:
            out.append(self._emit(partition))
            buf = None
        if buf is None:
            buf = self._buffers[partition] = _Buffer(now, key, offset)
        buf.values.append(value)
        buf.size += len(value) + 1
        buf.next_offset = offset + 1
        if len(buf.values) >= self.max_events:
            out.append(self._emit(partition))
        return out

    def due(self, now: float) -> list[Output]:
        """Envelopes whose first event has waited `linger` or longer."""
        linger = self.linger_s
        late = [p for p, buf in self._buffers.items() if buf.started + linger <= now]
        return [self._emit(p) for p in late]

    def next_due(self) -> float | None:
        """When the oldest buffered envelope is due, or None if nothing is buffered."""
        if not self._buffers:
            return None
        return min(buf.started for buf in self._buffers.values()) + self.linger_s

    def flush(self, partitions: Iterable[int] | None = None) -> list[Output]:
        """Every buffered envelope (of `partitions`), now."""
        wanted = list(self._buffers) if partitions is None else list(partitions)
        return [self._emit(p) for p in wanted if p in self._buffers]

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget buffered events (their partition moved; its new owner re-reads them)."""
        for p in partitions:
            self._buffers.pop(p, None)

    def buffered(self) -> int:
        return sum(len(buf.values) for buf in self._buffers.values())

    def _emit(self, partition: int) -> Output:
        buf = self._buffers.pop(partition)
        value = b"[" + b",".join(buf.values) + b"]"
        return Output(
            partition,
            partition,
            buf.key,
            value,
            len(buf.values),
            buf.first_offset,
            buf.next_offset,
        )

    def _check(self, partition: int, value: bytes | None) -> tuple[str | None, int]:
        """(None, partition) if the value can be packed, else (reason, where it goes)."""
        if value is None:
            return "invalid", partition
        size = len(value)
        if size > self.max_event_bytes or (
            size >= _DEEP_MIN_BYTES and value.count(b"{") + value.count(b"[") >= _DEEP_BRACKETS
        ):
            return "oversize", partition
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return "invalid", partition
        if type(obj) is not dict:
            return "invalid", partition
        line = obj.get("line_id")
        if type(line) is not str:
            return None, partition  # the detector dead-letters it wherever it is
        home = self._lines.get(line)
        if home is None:
            if len(self._lines) >= self._line_cache:
                self._lines.clear()
            home = self._lines[line] = partition_for(line, self.partitions)
        if home != partition:
            return "misplaced", home
        return None, partition


class PackerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.events = Counter(
            "tollguard_packer_events_total",
            "Input events the broker acknowledged, in envelopes or alone",
            registry=r,
        )
        self.envelopes = Counter(
            "tollguard_packer_envelopes_total", "Envelopes the broker acknowledged", registry=r
        )
        self.passthrough = Counter(
            "tollguard_packer_passthrough_total",
            "Input records sent on their own instead of in an envelope, by reason",
            ["reason"],
            registry=r,
        )
        self.produce_errors = Counter(
            "tollguard_packer_produce_errors_total",
            "Records Kafka did not accept (the packer then stops)",
            registry=r,
        )
        self.buffered = Gauge(
            "tollguard_packer_buffered_events", "Events waiting to be packed", registry=r
        )
        for reason in PASSTHROUGH_REASONS:
            self.passthrough.labels(reason=reason)


class PackerError(SystemExit):
    """The packer cannot (go on) run; the message says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(f"tollguard: {message}")


async def run_packer(
    settings: Settings,
    input_topic: str = DEFAULT_INPUT_TOPIC,
    max_events: int = DEFAULT_MAX_EVENTS,
    linger_ms: float = DEFAULT_LINGER_MS,
    stop_event: asyncio.Event | None = None,
    *,
    output_topic: str | None = None,
    group_id: str | None = None,
    web_port: int | None = None,
    metrics: PackerMetrics | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> None:
    """Pack `input_topic` into `output_topic` (default `settings.topic_events`) until stopped.

    Without `stop_event`, SIGINT and SIGTERM stop it. On stop, buffered
    events are sent, acknowledged and their offsets committed. Raises
    PackerError (a SystemExit) when the topics do not fit or a send fails.
    """
    runner = _Runner(
        settings,
        input_topic,
        output_topic or settings.topic_events,
        group_id or f"{settings.app_id}-packer",
        max_events,
        linger_ms / 1000,
        max_bytes,
        metrics or PackerMetrics(),
    )
    if web_port:
        start_http_server(web_port, addr=settings.web_host, registry=runner.metrics.registry)
    stop = stop_event if stop_event is not None else asyncio.Event()
    if stop_event is None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    await runner.run(stop)


class _Runner:
    def __init__(
        self,
        settings: Settings,
        input_topic: str,
        output_topic: str,
        group_id: str,
        max_events: int,
        linger_s: float,
        max_bytes: int,
        metrics: PackerMetrics,
    ) -> None:
        self.settings = settings
        self.input_topic = input_topic
        self.output_topic = output_topic
        self.group_id = group_id
        self.max_events = max_events
        self.linger_s = linger_s
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.packer: Packer | None = None
        self.consumer: Any = None
        self.producer: Any = None
        self.lock = asyncio.Lock()
        self.owned: set[int] = set()
        self.pending: dict[int, deque[tuple[asyncio.Future[Any], Output]]] = {}
        self.acked: dict[int, int] = {}  # input partition -> next offset safe to commit
        self.committed: dict[int, int] = {}
        self.failure: BaseException | None = None
        self._last_commit = 0.0
        self._misplaced = 0
        self._misplaced_logged = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        common = aiokafka_config(self.settings)
        partitions = await self._check_topics(common)
        self.packer = Packer(
            partitions,
            self.max_events,
            self.linger_s,
            self.max_bytes,
            self.settings.max_event_bytes,
        )
        self.producer = AIOKafkaProducer(
            **common,
            acks="all",
            enable_idempotence=self.settings.producer_idempotence,
            linger_ms=0,
            max_batch_size=1024 * 1024,
            max_request_size=1024 * 1024,
        )
        await self.producer.start()
        try:
            self.consumer = AIOKafkaConsumer(
                **common,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=4 * 1024 * 1024,
                fetch_max_bytes=16 * 1024 * 1024,
                isolation_level="read_committed",
            )
            self.consumer.subscribe([self.input_topic], listener=_Rebalance(self))
            await self.consumer.start()
            try:
                log.info(
                    "packing %s into %s (%d partitions, group %s): at most %d events "
                    "or %.1f ms per envelope",
                    self.input_topic,
                    self.output_topic,
                    partitions,
                    self.group_id,
                    self.max_events,
                    self.linger_s * 1000,
                )
                print(
                    f"tollguard ingest pack: {self.input_topic} -> {self.output_topic}, "
                    f"{partitions} partitions",
                    flush=True,
                )
                await self._loop(stop)
                async with self.lock:
                    await self._send(self.packer.flush())
                    await self._settle(self.pending)
                    await self._commit(force=True)
            finally:
                await self.consumer.stop()
        finally:
            await self.producer.stop()

    async def _check_topics(self, common: dict[str, Any]) -> int:
        """Both topics exist with the same partition count (metadata only, creates nothing)."""
        client = AIOKafkaClient(**common)
        try:
            await client.bootstrap()
            cluster = await client.fetch_all_metadata()
        finally:
            await client.close()
        topics = cluster.topics()
        where = f"on Kafka at {self.settings.broker}"
        if self.input_topic not in topics:
            raise PackerError(
                f"input topic {self.input_topic!r} does not exist {where}: create it with "
                f"as many partitions as {self.output_topic!r}, or pass --input-topic"
            )
        if self.output_topic not in topics:
            raise PackerError(
                f"output topic {self.output_topic!r} does not exist {where}: start "
                "`tollguard worker` once (it creates it) or set TOLLGUARD_TOPIC_EVENTS"
            )
        n_in = len(cluster.partitions_for_topic(self.input_topic) or ())
        n_out = len(cluster.partitions_for_topic(self.output_topic) or ())
        if n_in != n_out:
            raise PackerError(_mismatch(self.input_topic, n_in, self.output_topic, n_out))
        return n_in

    async def _loop(self, stop: asyncio.Event) -> None:
        consumer, packer = self.consumer, self.packer
        assert packer is not None
        batch = self.settings.batch_size
        while not stop.is_set():
            due = packer.next_due()
            wait = 0.1 if due is None else min(0.1, max(0.0, due - time.monotonic()))
            fetched = await consumer.getmany(timeout_ms=math.ceil(wait * 1000), max_records=batch)
            async with self.lock:
                if self.failure is not None:
                    raise self.failure
                now = time.monotonic()
                out: list[Output] = []
                owned = self.owned
                for tp, records in fetched.items():
                    p = tp.partition
                    if p not in owned:
                        continue  # revoked meanwhile: the new owner reads these again
                    add = packer.add
                    for r in records:
                        out.extend(add(p, r.offset, r.key, r.value, now))
                out.extend(packer.due(now))
                await self._send(out)
                self._reap()
                self.metrics.buffered.set(packer.buffered())
                await self._commit()

    async def _send(self, outputs: list[Output]) -> None:
        send, topic = self.producer.send, self.output_topic
        for o in outputs:
            try:
                fut = await send(topic, o.value, key=o.key, partition=o.partition)
            except Exception as exc:
                self.metrics.produce_errors.inc()
                # Later records of this partition may be sent (a revocation flushes):
                # from now on nothing is committed.
                self.failure = PackerError(_send_failed(topic, o, exc))
                raise self.failure from None
            self.pending.setdefault(o.source, deque()).append((fut, o))
            if o.reason == "misplaced":
                self._warn_misplaced()

    def _reap(self) -> None:
        """Take acknowledged records off the front of each partition's queue."""
        m = self.metrics
        for source, queue in self.pending.items():
            while queue and queue[0][0].done():
                fut, o = queue[0]
                exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
                if exc is not None:
                    # Left at the front: no later record of this partition counts as
                    # acknowledged, so no offset past the lost one is ever committed.
                    m.produce_errors.inc()
                    self.failure = PackerError(_send_failed(self.output_topic, o, exc))
                    raise self.failure
                queue.popleft()
                m.events.inc(o.events)
                if o.reason is None:
                    m.envelopes.inc()
                else:
                    m.passthrough.labels(reason=o.reason).inc()
                self.acked[source] = o.next_offset

    async def _settle(self, pending: dict[int, deque[tuple[asyncio.Future[Any], Output]]]) -> None:
        """Wait for every record in `pending` to be acknowledged (or fail), then reap."""
        futures = [fut for queue in pending.values() for fut, _ in queue]
        if futures:
            await asyncio.wait(futures)
        self._reap()

    async def _commit(self, force: bool = False, only: set[int] | None = None) -> None:
        now = time.monotonic()
        if self.failure is not None:
            return  # stopping on an error: keep the offsets of the last good commit
        if not force and now - self._last_commit < self.settings.commit_interval_s:
            return
        offsets = {
            TopicPartition(self.input_topic, p): o
            for p, o in self.acked.items()
            if o > self.committed.get(p, -1) and (only is None or p in only)
        }
        self._last_commit = now
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # a rebalance in flight: the next owner re-reads
            log.warning("offset commit failed (%s); uncommitted events will be re-read", exc)
            return
        for tp, o in offsets.items():
            self.committed[tp.partition] = o

    async def revoked(self, partitions: set[int]) -> None:
        """Send what is buffered for `partitions`, wait for it, commit, forget them."""
        async with self.lock:
            try:
                if self.failure is not None:
                    return  # stopping on an error: nothing more is sent or committed
                if self.packer is not None:
                    await self._send(self.packer.flush(partitions))
                await self._settle({p: q for p, q in self.pending.items() if p in partitions})
                await self._commit(force=True, only=partitions)
            except (Exception, PackerError) as exc:  # aiokafka only logs a listener's errors
                self.failure = exc
            finally:
                if self.packer is not None:
                    self.packer.drop(partitions)
                for p in partitions:
                    self.pending.pop(p, None)
                    self.acked.pop(p, None)
                    self.committed.pop(p, None)
                self.owned -= partitions

    async def assigned(self, partitions: set[int]) -> None:
        async with self.lock:
            self.owned |= partitions
            # Partitions added to the input topic show up here; the output must follow.
            n_in = len(self.consumer.partitions_for_topic(self.input_topic) or ())
            expected = self.packer.partitions if self.packer is not None else n_in
            if n_in != expected:
                self.failure = PackerError(
                    _mismatch(self.input_topic, n_in, self.output_topic, expected)
                )

    def _warn_misplaced(self) -> None:
        self._misplaced += 1
        now = time.monotonic()
        if now - self._misplaced_logged >= 60:
            log.warning(
                "%d events read from a partition other than their line's (murmur2 of "
                "line_id): sent alone to the right partition. Producers to %s should key "
                "by line_id with Kafka's default (murmur2) partitioner.",
                self._misplaced,
                self.input_topic,
            )
            self._misplaced = 0
            self._misplaced_logged = now


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: _Runner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self.runner.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        await self.runner.assigned({tp.partition for tp in assigned})


def _mismatch(input_topic: str, n_in: int, output_topic: str, n_out: int) -> str:
    return (
        f"input topic {input_topic!r} has {n_in} partitions but {output_topic!r} has {n_out}: "
        "the packer writes each envelope to the partition number it read the events from, "
        "so both topics need the same count. Recreate the input topic with "
        f"{n_out} partitions (or add partitions so both match; lines then move partitions "
        "and the detector's windows for them start empty)."
    )


def _send_failed(topic: str, o: Output, exc: BaseException) -> str:
    what = f"an envelope of {o.events} events" if o.reason is None else "a record"
    return (
        f"Kafka did not accept {what} for {topic} "
        f"partition {o.partition} ({type(exc).__name__}: {exc}); stopping. Offsets are "
        "committed only up to the last acknowledged record: restart to resume from there."
    )
