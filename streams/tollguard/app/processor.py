"""Batches of raw Kafka records in, signals and dead letters out.

This is the whole detector minus Kafka: the Detector service hands it records
(single events or envelopes) and publishes what it returns. One engine per
input partition keeps each partition's lines together, so state moves with its
partition.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from time import monotonic, perf_counter, time
from typing import Any, NamedTuple, Protocol

import orjson

from tollguard.app.heap import release_free_memory
from tollguard.app.metrics import Metrics
from tollguard.engine import Engine, EngineConfig, EventError, EventParser, RulePack
from tollguard.engine.engine import DUPLICATE
from tollguard.engine.events import (
    EVENT_TYPES,
    MAX_ENVELOPE_EVENTS,
    CallEvent,
    EnvelopeItemError,
    wire_form,
)
from tollguard.engine.snapshot import SnapshotError, decode_line, encode_line
from tollguard.numbering import DestinationTable, DialPlan
from tollguard.signals.model import BLOCK, UNBLOCK, ControlSignal

log = logging.getLogger("tollguard.processor")


class StateRecord(NamedTuple):
    """One changelog write: a line's state (or None: forget the line) in a partition."""

    partition: int
    key: bytes
    value: bytes | None


class Record(Protocol):
    """What the processor reads of a Kafka record (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RawRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class Outputs:
    """What one batch asks the shell to publish, as (key, value) pairs."""

    control: list[tuple[bytes, bytes]] = field(default_factory=list)
    blocks: list[tuple[bytes, bytes]] = field(default_factory=list)
    deadletter: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    signals: list[ControlSignal] = field(default_factory=list)


def dead_letter(
    record: Record, reason: str, error: str, item: Any = None, index: int | None = None
) -> bytes:
    """A dead-letter value; for an event inside an envelope, `item` is that event."""
    raw = (record.value or b"") if item is None else orjson.dumps(item)
    letter: dict[str, Any] = {
        "reason": reason,
        "error": error,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "raw": raw.decode("utf-8", errors="backslashreplace"),
    }
    if index is not None:
        letter["index"] = index  # position of the event in its envelope
    return orjson.dumps(letter)


@dataclass(slots=True)
class _Tally:
    """What one call of `process` counts, for the metrics."""

    by_type: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    by_country: dict[str, int] = field(default_factory=dict)
    event_times: list[int] = field(default_factory=list)
    duplicates: int = 0
    replayed: int = 0

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


# Lines a checkpoint step handles between looks at the clock (a few hundred us).
_STEP_LINES = 128


@dataclass(slots=True)
class _IdleScan:
    """A partition's lines still to check for idleness, in slices."""

    line_ids: list[str]
    before_ts: int
    next: int = 0

    def take(self, n: int) -> list[str]:
        chunk = self.line_ids[self.next : self.next + n]
        self.next += n
        return chunk

    @property
    def done(self) -> bool:
        return self.next >= len(self.line_ids)


@dataclass(slots=True)
class _PartitionWork:
    partition: int
    dirty: set[str]
    idle: _IdleScan | None


@dataclass(slots=True)
class _Round:
    positions: dict[int, int]  # input offsets the round covers, per partition
    work: list[_PartitionWork]


class BatchProcessor:
    def __init__(
        self,
        pack: RulePack,
        dial_plans: dict[str, DialPlan],
        destinations: DestinationTable,
        metrics: Metrics,
        lateness_ms: int = 60_000,
        max_event_bytes: int = 64 * 1024,
        evict_scan_s: float = 60.0,
        max_event_depth: int = 16,
    ) -> None:
        self.dial_plans = dial_plans
        self.destinations = destinations
        self.metrics = metrics
        self.engine_config = EngineConfig(lateness_ms=lateness_ms)
        self.max_event_bytes = max_event_bytes
        self.max_event_depth = max_event_depth
        self.engines: dict[int, Engine] = {}
        # Durable state bookkeeping, per input partition: the next input offset,
        # and for lines restored from the changelog the offset their state
        # already covers (replays below it skip). Each engine tracks its own
        # changed lines.
        self.positions: dict[int, int] = {}
        self.covered: dict[int, dict[str, int]] = {}
        self.corrupt_state_records = 0
        # Events per input record, averaged: envelopes hold hundreds, so the
        # detector sizes its fetches in records from this to bound a batch in events.
        # Before any record, the most an envelope may hold: from 1, a worker
        # starting on a backlog of envelopes takes a whole fetch (16 MiB, ~100,000
        # events, about a second) in its first loop, heartbeats and /metrics waiting.
        self.events_per_record = float(MAX_ENVELOPE_EVENTS)
        # Finding idle lines walks every line, so it runs this often at most.
        self.evict_scan_s = evict_scan_s
        self._last_evict_scan = monotonic()
        self.round: _Round | None = None
        self.pack = pack
        self.parser = self._parser(pack)
        metrics.announce_rules(pack.version, [(r.id, r.limits.mode) for r in pack.rules])

    def _parser(self, pack: RulePack) -> EventParser:
        plan = self.dial_plans.get(pack.dial_plan)
        if plan is None:
            known = ", ".join(sorted(self.dial_plans))
            raise ValueError(
                f"rule pack {pack.name} names unknown dial plan {pack.dial_plan!r}; known: {known}"
            )
        return EventParser(plan, self.destinations, self.max_event_bytes, self.max_event_depth)

    def set_pack(self, pack: RulePack) -> None:
        """Apply a new rule pack to every engine; raises without change if unusable."""
        parser = self._parser(pack)
        self.pack, self.parser = pack, parser
        for engine in self.engines.values():
            engine.set_pack(pack)
        self.metrics.announce_rules(pack.version, [(r.id, r.limits.mode) for r in pack.rules])

    def engine(self, partition: int) -> Engine:
        engine = self.engines.get(partition)
        if engine is None:
            engine = self.engines[partition] = self._new_engine()
        return engine

    def _new_engine(self) -> Engine:
        return Engine(self.pack, self.engine_config, destinations=self.destinations)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            if self.round is not None:
                self.round.positions.pop(p, None)
            self.engines.pop(p, None)
            self.positions.pop(p, None)
            self.covered.pop(p, None)

    def checkpoint(self, idle_ms: int | None = None) -> list[StateRecord]:
        """Changelog writes for every line changed until now, all at once.

        Finishes an open round first. Once these are acknowledged, the current
        `positions` may be committed.
        """
        records = []
        if self.round is not None:
            records = self.checkpoint_step()
            self.close_checkpoint()
        self.open_checkpoint(idle_ms)
        records += self.checkpoint_step()
        self.close_checkpoint()
        return records

    def open_checkpoint(self, idle_ms: int | None = None) -> None:
        """Start a checkpoint round: the lines changed so far, and the offsets they cover.

        Its writes are made by `checkpoint_step`, a slice at a time between
        batches, because encoding every changed line at once stalls decisions
        (about 0.3 s for 100,000 lines). The round's offsets may be committed
        once all of its writes are acknowledged. Lines idle for `idle_ms` of
        event time (and not blocked) are evicted by the round too, and written
        as tombstones so the changelog forgets them; the round first hands
        freed heap back to the OS.
        """
        assert self.round is None, "a checkpoint round is already open"
        scan = idle_ms is not None and monotonic() - self._last_evict_scan >= self.evict_scan_s
        if scan:
            self._last_evict_scan = monotonic()
            # What the last round's records held is free by now.
            release_free_memory()
        work: list[_PartitionWork] = []
        for partition, engine in self.engines.items():
            dirty, engine.dirty = engine.dirty, set()
            idle = None
            if scan and idle_ms is not None and engine.lines:
                idle = _IdleScan(list(engine.lines), engine.max_ts - idle_ms)
            if dirty or idle:
                work.append(_PartitionWork(partition, dirty, idle))
        self.round = _Round(dict(self.positions), work)

    def checkpoint_step(self, deadline: float | None = None) -> list[StateRecord]:
        """The open round's next writes, until `perf_counter()` passes `deadline` (None: all).

        Each line is written as it is now, with the offset the processor has
        reached now: replaying from that offset would never apply an event
        twice, even if the line changed after the round opened.
        """
        checkpoint = self.round
        assert checkpoint is not None, "no checkpoint round is open"
        records: list[StateRecord] = []
        work = checkpoint.work
        key_of = str.encode
        while work:
            item = work[-1]
            partition = item.partition
            engine = self.engines.get(partition)
            if engine is None:  # partition dropped since the round opened
                work.pop()
                continue
            offset = self.positions.get(partition, 0)
            scan = item.idle
            if scan is not None:
                for line_id in engine.evict_idle(scan.before_ts, scan.take(8 * _STEP_LINES)):
                    item.dirty.discard(line_id)
                    records.append(StateRecord(partition, key_of(line_id), None))
                if scan.done:
                    item.idle = None
            else:
                lines, dirty = engine.lines, item.dirty
                for _ in range(min(_STEP_LINES, len(dirty))):
                    line_id = dirty.pop()
                    state = lines.get(line_id)
                    value = None if state is None else encode_line(state, offset)
                    records.append(StateRecord(partition, key_of(line_id), value))
                if not dirty:
                    work.pop()
            if deadline is not None and perf_counter() >= deadline:
                break
        return records

    @property
    def checkpoint_written(self) -> bool:
        """Every write of the open round has been handed out."""
        return self.round is not None and not self.round.work

    def close_checkpoint(self) -> dict[int, int]:
        """End the round; its offsets, to commit once its writes are acknowledged."""
        checkpoint = self.round
        assert checkpoint is not None and not checkpoint.work, "round has writes left"
        self.round = None
        for partition, offset in checkpoint.positions.items():
            covered = self.covered.get(partition)
            if covered and offset >= max(covered.values()):
                del self.covered[partition]  # replay has passed every restored line
        return checkpoint.positions

    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Rebuild a partition's engine from its changelog (oldest record first)."""
        latest: dict[str, tuple[Any, int] | None] = {}
        for key, value in records:
            line_id = key.decode(errors="replace")
            if value is None:
                latest[line_id] = None
                continue
            try:
                latest[line_id] = decode_line(value)
            except SnapshotError as exc:
                self.corrupt_state_records += 1
                log.error("changelog record for a line in partition %d ignored: %s", partition, exc)
        engine = self.engines[partition] = self._new_engine()
        covered: dict[str, int] = {}
        for line_id, item in latest.items():
            if item is not None:
                state, offset = item
                engine.adopt(line_id, state)
                covered[line_id] = offset
        if covered:
            self.covered[partition] = covered
        return len(covered)

    def process(self, records: Iterable[Record], now_ms: int) -> Outputs:
        out = Outputs()
        tally = _Tally()
        parse = self.parser.parse
        positions = self.positions
        # Each partition's events, decided in one engine call per partition;
        # with, per record, where its events start in that partition's run.
        runs: dict[int, tuple[list[CallEvent], list[tuple[int, Record, bool]]]] = {}
        covering = self.covered
        n_records = n_events = 0
        for record in records:
            n_records += 1
            partition = record.partition
            positions[partition] = record.offset + 1
            value = record.value
            enveloped = value is not None and value.startswith(b"[")
            if enveloped:
                assert value is not None
                events = self._unpack(record, value, out, tally)
                n_events += max(1, len(events))
            else:
                n_events += 1
                try:
                    events = [parse(value)]
                except EventError as exc:
                    tally.reject(exc.reason)
                    out.deadletter.append((record.key, dead_letter(record, exc.reason, exc.detail)))
                    continue
            covered = covering.get(partition) if covering else None
            if covered:
                offset = record.offset
                kept = [e for e in events if offset >= covered.get(e.line_id, -1)]
                tally.replayed += len(events) - len(kept)  # already in the lines' restored state
                events = kept
            run = runs.get(partition)
            if run is None:
                run = runs[partition] = ([], [])
            run[1].append((len(run[0]), record, enveloped))
            run[0].extend(events)
        for partition, (run_events, sources) in runs.items():
            self._decide(partition, run_events, sources, tally, out)
        if n_records:
            self.events_per_record += 0.5 * (n_events / n_records - self.events_per_record)
        self._publish(out.signals, out)
        m = self.metrics
        for etype, n in tally.by_type.items():
            m.events.labels(type=etype).inc(n)
        for reason, n in tally.rejected.items():
            m.rejected.labels(reason=reason).inc(n)
        for code, n in tally.by_country.items():
            m.destination_calls.labels(country=code).inc(n)
        if tally.duplicates:
            m.duplicates.inc(tally.duplicates)
        if tally.replayed:
            m.replayed.inc(tally.replayed)
        m.event_lag.observe_lags(now_ms, tally.event_times)
        return out

    def _decide(
        self,
        partition: int,
        run: list[CallEvent],
        sources: list[tuple[int, Record, bool]],
        tally: _Tally,
        out: Outputs,
    ) -> None:
        """One partition's events of a batch through its engine, and their counts."""
        refused = self.engine(partition).process_batch(run, out.signals)
        if refused:
            starts = [start for start, _, _ in sources]
            for index, verdict in refused:
                if verdict == DUPLICATE:
                    tally.duplicates += 1
                    continue
                tally.reject(verdict)
                _, record, enveloped = sources[bisect_right(starts, index) - 1]
                event = run[index]
                item = wire_form(event) if enveloped else None
                letter = dead_letter(record, verdict, _late_detail(event), item)
                out.deadletter.append((record.key, letter))
            gone = {index for index, _ in refused}
            run = [e for i, e in enumerate(run) if i not in gone]
        tally.event_times += [e.ts_ms for e in run]
        types: list[str] = [e.type for e in run]
        by_type = tally.by_type
        for event_type in EVENT_TYPES:
            n = types.count(event_type)
            if n:
                by_type[event_type] = by_type.get(event_type, 0) + n
        by_country = tally.by_country
        for dest in [e.dest for e in run if e.international]:
            if dest is not None:
                code = dest.country_code
                by_country[code] = by_country.get(code, 0) + 1

    def _unpack(self, record: Record, value: bytes, out: Outputs, tally: _Tally) -> list[CallEvent]:
        """An envelope's good events; its bad elements (or all of it) go to dead letters."""
        try:
            items = self.parser.parse_envelope(value)
        except EventError as exc:
            tally.reject(exc.reason)
            out.deadletter.append((record.key, dead_letter(record, exc.reason, exc.detail)))
            return []
        events: list[CallEvent] = []
        for item in items:
            if type(item) is CallEvent:
                events.append(item)
            else:
                assert isinstance(item, EnvelopeItemError)
                tally.reject(item.reason)
                letter = dead_letter(record, item.reason, item.detail, item.item, item.index)
                out.deadletter.append((record.key, letter))
        return events

    def expire(self, now_ms: int) -> Outputs:
        """Lift blocks whose TTL has passed; `now_ms` is the later of wall and event time."""
        out = Outputs()
        for engine in self.engines.values():
            out.signals.extend(engine.expire(max(now_ms, engine.max_ts)))
        self._publish(out.signals, out)
        return out

    def _publish(self, signals: list[ControlSignal], out: Outputs) -> None:
        if not signals:
            return
        issued = int(time() * 1000)
        m = self.metrics
        for s in signals:
            key = s.line_id.encode()
            value = s.encode(issued)
            out.control.append((key, value))
            if s.action in (BLOCK, UNBLOCK):
                out.blocks.append((key, value))
            m.signals.labels(
                action=s.action, rule=s.rule_id or "", severity=s.severity, mode=s.mode
            ).inc()

    def refresh_gauges(self) -> None:
        m = self.metrics
        m.tracked_lines.set(sum(len(e.lines) for e in self.engines.values()))
        m.active_blocks.set(sum(e.active_blocks() for e in self.engines.values()))


def _late_detail(event: CallEvent) -> str:
    return f"event for line {event.line_id!r} is older than the allowed lateness"
