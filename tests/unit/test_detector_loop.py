"""The detector's loop: events are decided between the slices of a checkpoint round, a
round's changelog batches wait to be queued one per partition at a time, and the loop runs
the young garbage collections itself."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]

from tollguard.app import detector as detector_module
from tollguard.app.collector import YoungCollections
from tollguard.app.detector import Detector
from tollguard.app.metrics import Metrics
from tollguard.app.processor import RawRecord, StateRecord
from tollguard.config import load_settings

from .test_state import decisions, processor, records


class FetchingConsumer:
    """aiokafka's consumer where it matters here.

    Records reach `getmany` only through a fetch that runs on the event loop,
    as aiokafka's fetcher task does, and `getmany(timeout_ms=0)` returns what
    is already fetched without yielding to the loop.
    """

    def __init__(self, pending: list[RawRecord]) -> None:
        self.pending = pending
        self.fetched: list[RawRecord] = []
        self.arrived = asyncio.Event()
        self.fetcher = asyncio.ensure_future(self._fetch())

    async def _fetch(self) -> None:
        while self.pending:
            await asyncio.sleep(0)
            self.fetched.append(self.pending.pop(0))
            self.arrived.set()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[RawRecord]]:
        if not self.fetched and timeout_ms > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout_ms / 1000)
        batch, self.fetched = self.fetched[:max_records], self.fetched[max_records:]
        if not self.fetched:
            self.arrived.clear()
        out: dict[Any, list[RawRecord]] = {}
        for r in batch:
            out.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
        return out

    async def commit(self, offsets: Any) -> None:
        pass


class _Batch:
    def append(self, key: bytes, value: bytes | None, timestamp: None) -> int:
        return 0


class AckingProducer:
    """Takes every record and acknowledges it at once."""

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[None]:
        return self._acked()

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        return self._acked()

    def _acked(self) -> asyncio.Future[None]:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack


async def consume_all(worker: Detector, recs: list[RawRecord]) -> None:
    """Run the worker's loop over `recs` until its consumer has handed all of them out."""
    consumer = worker.consumer = FetchingConsumer(list(recs))
    worker.producer = AckingProducer()
    worker._owned = {0, 1}
    loop = asyncio.ensure_future(worker._consume())
    for _ in range(2000):
        await asyncio.sleep(0.001)
        if not consumer.pending and not consumer.fetched:
            break
    loop.cancel()


def test_events_are_decided_between_the_slices_of_a_checkpoint_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One step of lines per slice, and a round as soon as one can open.
    monkeypatch.setattr(detector_module, "_CHECKPOINT_SLICE_S", 0.0)
    recs = records(n_lines=1000, attack_calls=0)
    first, later = recs[: len(recs) // 2], recs[len(recs) // 2 :][:200]
    proc = processor()
    decisions(proc, first)  # many changed lines: a round of many slices
    decided_during_round: list[bool] = []
    process = proc.process

    def watched(batch: Any, now_ms: int) -> Any:
        decided_during_round.append(proc.round is not None)
        return process(batch, now_ms)

    monkeypatch.setattr(proc, "process", watched)

    worker = Detector(load_settings(env={}, commit_interval_s=0.0), proc, Metrics())
    asyncio.run(consume_all(worker, later))
    assert proc.positions, "no event was decided"
    assert any(decided_during_round), "events waited for the whole checkpoint round"


class DrainingProducer(AckingProducer):
    """Queues a record batch only after the partition's previous one has left.

    aiokafka's `send_batch` waits like that, and with several batches waiting
    on one partition its timeout runs out early (see `Detector._send_batch`);
    this one counts how many wait on a partition at once.
    """

    def __init__(self) -> None:
        self.waiting: dict[int, int] = {}
        self.most_waiting = 0
        self.queued: list[tuple[int, str]] = []

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[None]:
        self.waiting[partition] = self.waiting.get(partition, 0) + 1
        self.most_waiting = max(self.most_waiting, self.waiting[partition])
        await asyncio.sleep(0.001)  # the previous batch leaving
        self.waiting[partition] -= 1
        self.queued.append((partition, topic))
        return self._acked()


def test_changelog_batches_of_a_partition_wait_to_be_queued_one_at_a_time() -> None:
    async def run() -> DrainingProducer:
        settings = load_settings(env={})
        worker = Detector(settings, processor(), Metrics())
        producer = worker.producer = DrainingProducer()
        # A checkpoint round written in slices: each slice a batch per partition.
        for step in range(20):
            slice_ = [StateRecord(p, f"line-{step}-{p}".encode(), b"{}") for p in (0, 1)]
            await worker._write_state(slice_)
        await asyncio.gather(*worker._unacked)
        return producer

    producer = asyncio.run(run())
    assert len(producer.queued) == 40  # every batch queued and acknowledged
    assert producer.most_waiting == 1


def test_the_loop_runs_the_young_collections_itself_as_events_are_handled() -> None:
    # Left to CPython, a young collection waits for net growth and then walks
    # every window the events since the last one replaced (50-100 ms).
    recs = records(n_lines=300, attack_calls=0)[:1200]
    metrics = Metrics()
    pauses = metrics.gc_pauses

    worker = Detector(load_settings(env={}, commit_interval_s=0.0), processor(), metrics)
    worker._young = YoungCollections(every_events=100, middle_every=4)
    gc.disable()  # only the loop's own collections are counted
    pauses.watch()
    try:
        asyncio.run(consume_all(worker, recs))
    finally:
        pauses.unwatch()
        gc.enable()
    young, middle, full = (sum(h.counts) for h in pauses.generations)
    assert young + middle >= len(recs) // 100 - 1
    assert middle >= 1 and full == 0
