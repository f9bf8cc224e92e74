"""The hot path: call events from Kafka, in whole fetched batches, to signals.

Faust hands a stream one message at a time through several asyncio hops per
message (a task per `wait_first`, a channel queue, the stream iterator); on
two cores that caps a pipeline near 9,000 events/s however little it does
(see docs/performance.md). This service lives inside the Faust app (same
lifecycle, logging, web server and timers) but reads `calls.events` with its
own aiokafka consumer, `getmany` batches straight into `BatchProcessor`.

It also owns the delivery contract: a batch's offsets are committed only after
every signal, dead letter and state record it produced has been acknowledged
by the broker (idempotent producer, acks=all). After a crash, events since the
last commit are processed again, and their signals carry the same `signal_id`.
Waiting for those acknowledgements happens beside the hot loop, not in it: the
next batch is decided while the previous one's records are still in flight,
so a broker round trip never delays a decision.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable
from typing import Any

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from mode import Service

from tollguard.app.collector import YoungCollections
from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, Outputs, StateRecord
from tollguard.config import Settings
from tollguard.kafka_security import aiokafka_config
from tollguard.privacy import for_log
from tollguard.signals.model import ControlSignal

log = logging.getLogger("tollguard.detector")

# Time a checkpoint round may take between two batches (more after a long batch).
_CHECKPOINT_SLICE_S = 0.005

# The detector's client options; the bench's latency floor (bench/relay.py) and
# raw baseline use them too, so that their numbers compare with the worker's.
# A signal leaves as soon as the loop yields; while a batch is being decided,
# records pile up into batches anyway. linger_ms=2 measured 4-6 ms from send to
# a consumer instead of 1.5-2.
PRODUCER_OPTIONS: dict[str, Any] = {"acks": "all", "linger_ms": 0, "max_batch_size": 256 * 1024}
FETCH_OPTIONS: dict[str, Any] = {
    "max_partition_fetch_bytes": 4 * 1024 * 1024,
    "fetch_max_bytes": 16 * 1024 * 1024,
    "isolation_level": "read_committed",
}


def kafka_client_config(settings: Settings) -> dict[str, Any]:
    """Connection settings (bootstrap, TLS, SASL) shared by every aiokafka client."""
    return aiokafka_config(settings)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.detector.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.detector.on_assigned(assigned)


class Detector(Service):
    """Consume, decide, publish, commit: one batch at a time, in that order."""

    def __init__(self, settings: Settings, processor: BatchProcessor, metrics: Metrics) -> None:
        super().__init__()
        self.settings = settings
        self.processor = processor
        self.metrics = metrics
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._last_commit = 0.0
        # Sends since the last commit point, and the commit waiting on the ones before.
        self._unacked: list[Awaitable[Any]] = []
        self._committing: asyncio.Future[None] | None = None
        self._crashing: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        # One changelog record batch at a time waits to join each partition's queue.
        self._appending: dict[int, asyncio.Lock] = {}
        self._owned: set[int] = set()
        self._young = YoungCollections()

    async def on_start(self) -> None:
        s = self.settings
        common = kafka_client_config(s)
        self.producer = AIOKafkaProducer(
            **common,
            **PRODUCER_OPTIONS,
            enable_idempotence=s.producer_idempotence,
        )
        await self.producer.start()
        # Learn where every output topic lives now: otherwise the first signal
        # of a fresh worker waits for a metadata round trip (~100 ms measured).
        for topic in (s.topic_control, s.topic_blocks, s.topic_deadletter, s.state_topic):
            await self.producer.partitions_for(topic)
        self.consumer = AIOKafkaConsumer(
            **common,
            group_id=s.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **FETCH_OPTIONS,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        self.consumer.subscribe([s.topic_events], listener=_Rebalance(self))
        await self.consumer.start()
        self.add_future(self._consume())

    async def on_stop(self) -> None:
        if self.consumer is not None:
            async with self._lock:
                await self._commit(force=True)
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            await self._commit(force=True)
            self.processor.drop_partitions(tp.partition for tp in revoked)
            self._owned.difference_update(tp.partition for tp in revoked)
        self.metrics.assigned_partitions.set(len(self._owned))

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Rebuild the assigned partitions' lines from the changelog before any event."""
        partitions = sorted(tp.partition for tp in assigned)
        if not partitions:
            return
        started = time.monotonic()
        # aiokafka may already be fetching for these partitions: holding the lock
        # keeps their records waiting until the state they update is back.
        async with self._lock:
            restored = await self._restore(partitions)
            self._owned.update(partitions)
        self.metrics.assigned_partitions.set(len(self._owned))
        log.info(
            "assigned partitions %s: restored %d lines in %.2fs",
            partitions,
            restored,
            time.monotonic() - started,
        )

    async def _restore(self, partitions: list[int]) -> int:
        topic = self.settings.state_topic
        reader = AIOKafkaConsumer(
            **kafka_client_config(self.settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await reader.start()
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            records: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in partitions}
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                fetched = await reader.getmany(*remaining, timeout_ms=1000)
                for tp, batch in fetched.items():
                    records[tp.partition].extend((r.key, r.value) for r in batch)
                    if batch and batch[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
                for tp in list(remaining):
                    if await reader.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await reader.stop()
        return sum(self.processor.restore(p, records[p]) for p in partitions)

    async def _consume(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        batch_size = self.settings.batch_size
        busy = self.metrics.busy_seconds
        while not self.should_stop:
            started = time.perf_counter()
            # At most about `batch_size` events a loop, however many an envelope
            # holds: a loop blocks heartbeats, timers and /metrics while it runs.
            records = max(1, int(batch_size / self.processor.events_per_record))
            # An open checkpoint round goes on between batches, even with no events;
            # the 1 ms wait yields to the fetcher, which runs on this loop: without
            # it nothing arrives until the round ends (30-50 ms stalls measured).
            checkpointing = self.processor.round is not None
            fetched = await consumer.getmany(
                timeout_ms=1 if checkpointing else 200, max_records=records
            )
            n_records = sum(map(len, fetched.values()))
            async with self._lock:
                handled = time.perf_counter()
                if fetched:
                    await self._handle(fetched)
                # A saturated worker's long batches earn longer slices: rounds still end.
                spent = time.perf_counter() - handled
                await self._commit(slice_s=max(_CHECKPOINT_SLICE_S, spent / 4))
            # Done with: a collection now would walk every record of the batch.
            del fetched
            if n_records:
                events = n_records * self.processor.events_per_record
                generation = self._young.due(events)
                if generation is not None:
                    await asyncio.sleep(0)  # the sender first: this batch's signals go out
                    gc.collect(generation)
            if n_records or checkpointing:
                busy.inc(time.perf_counter() - started)

    async def _handle(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        consumed = time.monotonic()
        records: list[Any] = []
        owned = self._owned
        for tp, batch in fetched.items():
            if tp.partition not in owned:
                # Fetched before a rebalance took the partition away: its new
                # owner reads these again from the committed offset.
                continue
            records.extend(batch)  # ConsumerRecords are what the processor reads
        out = self.processor.process(records, int(time.time() * 1000))
        await self.publish(out)
        if out.signals:
            latency = time.monotonic() - consumed
            for _ in out.signals:
                self.metrics.decision_latency.observe(latency)
            _log_signals(out.signals)

    async def publish(self, out: Outputs) -> None:
        """Hand everything `out` holds to the producer; the next commit waits for its acks."""
        producer = self.producer
        assert producer is not None
        s = self.settings
        pending = self._unacked
        for key, value in out.deadletter:
            pending.append(await producer.send(s.topic_deadletter, value, key=key))
        for key, value in out.control:
            pending.append(await producer.send(s.topic_control, value, key=key))
        for key, value in out.blocks:
            pending.append(await producer.send(s.topic_blocks, value, key=key))

    async def expire(self) -> None:
        if self.producer is None:
            return  # not started yet
        async with self._lock:
            out = self.processor.expire(int(time.time() * 1000))
            await self.publish(out)
        _log_signals(out.signals)

    async def _write_state(self, records: list[StateRecord], in_order: bool = False) -> None:
        """Hand changelog records to the producer (acks are awaited by the commit).

        aiokafka holds a record batch until the previous one for its partition
        has left, and that wait (up to 40 ms measured, with the loop stopped)
        would delay decisions: so between batches each record batch is queued
        by a task of its own (the tasks of a partition take turns, see
        `_send_batch`). A round writes each line once, and the next opens only
        after this one is committed, so the order among those tasks does not
        matter. `in_order` queues them one after the other, for a forced
        checkpoint, which may write a line twice.
        """
        if not records:
            return
        producer = self.producer
        assert producer is not None
        topic = self.settings.state_topic
        # Whole record batches per partition: `send()` per line costs more than
        # encoding the line (profiled at ~15 us a record).
        by_partition: dict[int, list[StateRecord]] = {}
        for r in records:
            by_partition.setdefault(r.partition, []).append(r)
        batches: list[tuple[int, Any]] = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for r in items:
                if batch.append(key=r.key, value=r.value, timestamp=None) is None:
                    batches.append((partition, batch))
                    batch = producer.create_batch()
                    batch.append(key=r.key, value=r.value, timestamp=None)
            batches.append((partition, batch))
        pending = self._unacked
        for partition, batch in batches:
            if in_order:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
            else:
                pending.append(asyncio.ensure_future(self._send_batch(batch, topic, partition)))
        self.metrics.state_writes.inc(len(records))

    async def _send_batch(self, batch: Any, topic: str, partition: int) -> None:
        """Queue one record batch, then wait for its ack.

        The tasks of a partition take turns to queue their batch: aiokafka's
        `send_batch` waits for the partition's previous batch to leave, and
        takes the whole time waited so far off its timeout again on every turn
        of that wait, so with many tasks waiting on one partition a batch
        timed out after seconds instead of `request_timeout_ms`, and the
        worker stopped (seen 11 s after start, on a slow broker).
        """
        assert self.producer is not None
        appending = self._appending.get(partition)
        if appending is None:
            appending = self._appending[partition] = asyncio.Lock()
        async with appending:  # FIFO: batches are queued in the order written
            acked = await self.producer.send_batch(batch, topic, partition=partition)
        await acked

    async def _commit(self, force: bool = False, slice_s: float = _CHECKPOINT_SLICE_S) -> None:
        """Checkpoint, then commit the input offsets once everything before is acknowledged.

        Runs under the lock, between batches. A checkpoint round opens every
        `commit_interval_s` and writes its lines for at most about `slice_s`
        between two batches, so decisions never wait for a whole checkpoint.
        When its last line is written, waiting for the acknowledgements and
        the commit itself run as a task while the loop goes on; one such task
        at a time, so commits stay in order. Forced (stop, rebalance),
        everything is written and committed before return.
        """
        now = time.monotonic()
        processor = self.processor
        if not processor.positions or self.consumer is None:
            return
        idle_ms = self.settings.idle_evict_s * 1000
        if force:
            if self._committing is not None:
                await self._committing  # a failed send raises here too
                self._committing = None
            # The open round's queued writes first: a line may be written again now.
            await asyncio.gather(*self._unacked)
            await self._write_state(processor.checkpoint(idle_ms), in_order=True)
            # Every record before these offsets has been handed to the producer.
            positions = dict(processor.positions)
        else:
            if processor.round is None:
                in_flight = self._committing is not None and not self._committing.done()
                if in_flight or now - self._last_commit < self.settings.commit_interval_s:
                    return
                if self._committing is not None:
                    await self._committing
                    self._committing = None
                processor.open_checkpoint(idle_ms)
                self._last_commit = now
            await self._write_state(processor.checkpoint_step(time.perf_counter() + slice_s))
            if not processor.checkpoint_written:
                return
            positions = processor.close_checkpoint()
        topic = self.settings.topic_events
        offsets = {TopicPartition(topic, p): o for p, o in positions.items()}
        pending, self._unacked = self._unacked, []
        if force:
            await self._acked_then_commit(pending, offsets)
        else:
            self._committing = asyncio.ensure_future(self._acked_then_commit(pending, offsets))
            self._committing.add_done_callback(self._on_commit_done)

    async def _acked_then_commit(
        self, pending: list[Awaitable[Any]], offsets: dict[TopicPartition, int]
    ) -> None:
        if pending:
            await asyncio.gather(*pending)  # a record the broker refused: no commit
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # a rebalance in flight: the next owner re-reads
            log.warning("offset commit failed (%s); uncommitted events will be re-read", exc)

    def _on_commit_done(self, task: asyncio.Future[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            # Records were lost on the way to the broker: stop rather than commit
            # past them; a restarted worker re-reads from the last commit.
            log.error("a send failed, stopping the worker: %s", exc)
            self._crashing = asyncio.ensure_future(self.crash(exc))


def _log_signals(signals: list[ControlSignal]) -> None:
    for signal in signals:
        log.info(
            "signal %s %s line=%s rule=%s: %s",
            signal.action,
            signal.severity,
            signal.line_id,
            signal.rule_id,
            for_log(log, signal.reason),  # numbers masked below DEBUG
        )
