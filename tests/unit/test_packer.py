"""The packer's decisions (what goes in an envelope, what goes alone, when), without Kafka."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from tollguard.adapters.packer import (
    Output,
    Packer,
    PackerError,
    PackerMetrics,
    _Runner,
    partition_for,
)
from tollguard.config import load_settings

PARTITIONS = 4


def line_on(partition: int, n: int = 0, partitions: int = PARTITIONS) -> str:
    """The n-th line id `pbx-<i>` that Kafka's default partitioner puts on `partition`."""
    found = 0
    for i in range(10_000):
        line = f"pbx-{i}"
        if partition_for(line, partitions) == partition:
            if found == n:
                return line
            found += 1
    raise AssertionError("no such line")


def event(line: str, i: int = 0) -> bytes:
    ts = 1_795_910_400_000 + i
    return orjson.dumps({"call_id": f"c{i}", "ts": ts, "line_id": line, "callee": "+23276123456"})


def envelope_items(out: Output) -> list[bytes]:
    """The values an envelope holds, split back out (they are joined with no spaces)."""
    assert out.reason is None and out.value is not None
    items = orjson.loads(out.value)
    assert isinstance(items, list) and len(items) == out.events
    return [orjson.dumps(item) for item in items]


def test_murmur2_partition_matches_the_java_client() -> None:
    # Kafka's UtilsTest vectors: murmur2("21") = -973932308, murmur2("foobar") = -790332482;
    # the default partitioner takes toPositive(hash) % partitions.
    assert partition_for("21", 1_000_000_007) == (-973932308 & 0x7FFFFFFF) % 1_000_000_007
    assert partition_for("foobar", 997) == (-790332482 & 0x7FFFFFFF) % 997


def test_an_envelope_is_emitted_at_max_events_with_its_offsets_and_first_key() -> None:
    packer = Packer(PARTITIONS, max_events=3, linger_s=10)
    line = line_on(2)
    values = [event(line, i) for i in range(4)]
    assert packer.add(2, 10, b"k0", values[0], 0.0) == []
    assert packer.add(2, 11, b"k1", values[1], 0.0) == []
    [out] = packer.add(2, 12, b"k2", values[2], 0.0)
    assert out.value == b"[" + b",".join(values[:3]) + b"]"
    assert (out.source, out.partition, out.key, out.events) == (2, 2, b"k0", 3)
    assert (out.first_offset, out.next_offset, out.reason) == (10, 13, None)
    assert packer.add(2, 13, b"k3", values[3], 0.0) == []
    assert packer.buffered() == 1


def test_linger_counts_from_the_first_buffered_event() -> None:
    packer = Packer(PARTITIONS, max_events=100, linger_s=0.005)
    a, b = line_on(0), line_on(1)
    assert packer.next_due() is None
    packer.add(0, 0, None, event(a, 0), 1.000)
    packer.add(0, 1, None, event(a, 1), 1.004)
    packer.add(1, 0, None, event(b, 2), 1.003)
    assert packer.next_due() == pytest.approx(1.005)
    assert packer.due(1.0049) == []
    [out] = packer.due(1.005)
    assert (out.partition, out.events, out.next_offset) == (0, 2, 2)
    assert packer.next_due() == pytest.approx(1.008)
    [out] = packer.due(1.010)
    assert (out.partition, out.events) == (1, 1)
    assert packer.next_due() is None and packer.due(2.0) == []


def test_an_envelope_never_exceeds_max_bytes() -> None:
    line = line_on(3)
    values = [event(line, i) for i in range(10, 60)]  # all of one length
    limit = 3 * len(values[0]) + 4  # room for three events, brackets and two commas
    packer = Packer(PARTITIONS, max_events=500, linger_s=10, max_bytes=limit)
    outs: list[Output] = []
    for i, value in enumerate(values):
        outs.extend(packer.add(3, i, None, value, 0.0))
    outs.extend(packer.flush())
    assert all(o.value is not None and len(o.value) <= limit for o in outs)
    assert [o.events for o in outs[:-1]] == [3] * (len(outs) - 1)
    assert [item for o in outs for item in envelope_items(o)] == values


@pytest.mark.parametrize(
    "value",
    [
        None,  # tombstone
        b"not json",
        b"",
        b"  ",
        b'{"line_id": "pbx-1", "call_id": "c1"',  # truncated: would break the whole array
        b'{"call_id": "a"},{"call_id": "b"}',  # would become two events in an array
        b'{"call_id": "a"} {"call_id": "b"}',
        b'{"call_id": "\xff"}',  # bad UTF-8
        b'{"call_id": "a", "ts": NaN}',
        b"\xef\xbb\xbf{}",  # BOM
        b"[]",
        b'[{"call_id": "a"}]',  # already an array
        b'"text"',
        b"42",
        b"null",
    ],
)
def test_a_value_that_is_not_one_json_object_goes_alone_unchanged(value: bytes | None) -> None:
    packer = Packer(PARTITIONS, max_events=10, linger_s=10)
    line = line_on(1)
    packer.add(1, 5, b"k", event(line, 1), 0.0)
    before, alone = packer.add(1, 6, b"bad", value, 0.0)
    # What was buffered goes first, so the partition's order is kept.
    assert (before.reason, before.events, before.next_offset) == (None, 1, 6)
    assert alone == Output(1, 1, b"bad", value, 1, 6, 7, "invalid")
    assert packer.buffered() == 0


def test_oversize_and_too_deep_values_go_alone() -> None:
    packer = Packer(PARTITIONS, max_event_bytes=1000)
    big = b'{"line_id": "x", "pad": "' + b"a" * 1000 + b'"}'
    [out] = packer.add(0, 0, None, big, 0.0)
    assert out.reason == "oversize" and out.value == big
    # Parses alone (orjson allows 1024 levels) but not one level deeper inside an array.
    deep = b"{" + b'"a":{' * 1023 + b"}" * 1024
    orjson.loads(deep)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(b"[" + deep + b"]")
    [out] = Packer(PARTITIONS, max_event_bytes=1 << 20).add(0, 1, None, deep, 0.0)
    assert out.reason == "oversize"


def test_a_value_that_cannot_fit_an_envelope_goes_alone() -> None:
    packer = Packer(PARTITIONS, max_bytes=100, max_event_bytes=64 * 1024)
    value = b'{"line_id": "' + b"p" * 100 + b'"}'
    [out] = packer.add(0, 0, None, value, 0.0)
    assert out.reason == "oversize"


def test_an_event_of_a_line_from_another_partition_goes_alone_to_its_lines_partition() -> None:
    packer = Packer(PARTITIONS, max_events=10, linger_s=10)
    here, there = line_on(0), line_on(3)
    packer.add(0, 0, None, event(here, 0), 0.0)
    before, alone = packer.add(0, 1, b"key", event(there, 1), 0.0)
    assert before.partition == 0 and before.events == 1
    assert (alone.source, alone.partition, alone.reason) == (0, 3, "misplaced")
    assert alone.value == event(there, 1) and alone.key == b"key"


def test_valid_json_objects_are_packed_as_they_are_even_when_not_valid_events() -> None:
    """The detector dead-letters a bad event inside an envelope with its reason."""
    packer = Packer(PARTITIONS, max_events=3, linger_s=10)
    values = [b' {"call_id": "no line"}\n', b'{"line_id": 17}', b"{}"]
    outs = [o for i, v in enumerate(values) for o in packer.add(2, i, None, v, 0.0)]
    [out] = outs
    assert out.value == b"[" + b",".join(values) + b"]"
    assert orjson.loads(out.value) == [{"call_id": "no line"}, {"line_id": 17}, {}]


def test_flush_and_drop() -> None:
    packer = Packer(PARTITIONS, max_events=10, linger_s=10)
    for p in range(PARTITIONS):
        packer.add(p, 0, None, event(line_on(p), p), 0.0)
    assert [o.partition for o in packer.flush([1, 2, 9])] == [1, 2]
    packer.drop([0])
    assert [o.partition for o in packer.flush()] == [3]
    assert packer.flush() == [] and packer.buffered() == 0


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Packer(0)
    with pytest.raises(ValueError):
        Packer(4, max_events=0)
    with pytest.raises(ValueError):
        Packer(4, max_events=10_001)
    with pytest.raises(ValueError):
        Packer(4, linger_s=-1)


def test_metrics_carry_no_line_and_start_at_zero() -> None:
    m = PackerMetrics()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in m.registry.collect()
        for s in family.samples
    }
    assert samples[("tollguard_packer_events_total", ())] == 0
    assert samples[("tollguard_packer_envelopes_total", ())] == 0
    passthrough = [dict(k[1]) for k in samples if k[0] == "tollguard_packer_passthrough_total"]
    assert {labels["reason"] for labels in passthrough} == {"invalid", "oversize", "misplaced"}


_records = st.lists(
    st.tuples(
        st.integers(0, PARTITIONS - 1),  # input partition
        st.integers(0, 2),  # 0: an event of a line on that partition, 1: bad, 2: misplaced
        st.floats(0, 0.01),  # time step
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(_records, st.integers(1, 7), st.integers(60, 700))
def test_every_record_comes_out_once_in_order_with_contiguous_offsets(
    records: list[tuple[int, int, float]], max_events: int, max_bytes: int
) -> None:
    packer = Packer(PARTITIONS, max_events=max_events, linger_s=0.005, max_bytes=max_bytes)
    now = 0.0
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    sent: dict[int, list[bytes | None]] = {p: [] for p in range(PARTITIONS)}
    outs: list[Output] = []
    for i, (p, kind, step) in enumerate(records):
        now += step
        if kind == 0:
            value: bytes | None = event(line_on(p, i % 3), i)
        elif kind == 1:
            value = b"not json %d" % i
        else:
            value = event(line_on((p + 1) % PARTITIONS, i % 3), i)
        sent[p].append(value)
        outs.extend(packer.due(now))
        outs.extend(packer.add(p, offsets[p], None, value, now))
        offsets[p] += 1
    outs.extend(packer.flush())

    for p in range(PARTITIONS):
        mine = [o for o in outs if o.source == p]
        got: list[bytes | None] = []
        expected_first = 0
        for o in mine:
            assert o.first_offset == expected_first
            assert o.next_offset == o.first_offset + o.events
            expected_first = o.next_offset
            if o.reason is None:
                assert o.partition == p
                assert o.value is not None and len(o.value) <= max_bytes
                assert 1 <= o.events <= max_events
                items = envelope_items(o)
                assert all(
                    partition_for(orjson.loads(v)["line_id"], PARTITIONS) == p for v in items
                )
                got.extend(items)
            else:
                got.append(o.value)
                if o.reason == "misplaced":
                    assert o.value is not None
                    line = orjson.loads(o.value)["line_id"]
                    assert o.partition == partition_for(line, PARTITIONS) != p
                else:
                    assert o.partition == p
        assert expected_first == offsets[p]
        assert got == sent[p]


class _FakeProducer:
    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes | None, **_: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut


class _FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[int, int]] = []

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append({tp.partition: o for tp, o in offsets.items()})


def test_no_offset_past_a_failed_send_is_committed() -> None:
    async def scenario() -> tuple[_FakeConsumer, PackerMetrics]:
        metrics = PackerMetrics()
        runner = _Runner(
            load_settings(env={}), "calls.raw", "calls.events", "g", 2, 10.0, 900_000, metrics
        )
        runner.packer = Packer(PARTITIONS, max_events=2, linger_s=10)
        producer, consumer = _FakeProducer(), _FakeConsumer()
        runner.producer, runner.consumer = producer, consumer
        line = line_on(0)
        outs = [o for i in range(6) for o in runner.packer.add(0, i, None, event(line, i), 0.0)]
        await runner._send(outs)  # three envelopes: offsets 0-1, 2-3, 4-5
        first, second, third = producer.futures
        first.set_result(None)
        third.set_result(None)  # acknowledged, but after the one that fails
        runner._reap()
        await runner._commit(force=True)
        second.set_exception(KafkaTimeoutError())
        with pytest.raises(PackerError, match="did not accept an envelope of 2 events"):
            runner._reap()
        await runner._commit(force=True)
        return consumer, metrics

    consumer, metrics = asyncio.run(scenario())
    assert consumer.commits == [{0: 2}]
    assert metrics.registry.get_sample_value("tollguard_packer_envelopes_total") == 1
    assert metrics.registry.get_sample_value("tollguard_packer_produce_errors_total") == 1


def test_nothing_is_committed_after_a_send_that_could_not_be_queued() -> None:
    class Refusing(_FakeProducer):
        async def send(self, topic: str, value: bytes | None, **_: Any) -> asyncio.Future[Any]:
            if self.futures:
                raise KafkaTimeoutError()
            return await super().send(topic, value)

    async def scenario() -> _FakeConsumer:
        runner = _Runner(
            load_settings(env={}),
            "calls.raw",
            "calls.events",
            "g",
            2,
            10.0,
            900_000,
            PackerMetrics(),
        )
        runner.packer = Packer(PARTITIONS, max_events=2, linger_s=10)
        producer, consumer = Refusing(), _FakeConsumer()
        runner.producer, runner.consumer = producer, consumer
        line = line_on(0)
        outs = [o for i in range(4) for o in runner.packer.add(0, i, None, event(line, i), 0.0)]
        with pytest.raises(PackerError):
            await runner._send(outs)
        producer.futures[0].set_result(None)
        runner._reap()
        await runner._commit(force=True)
        await runner.revoked({0})  # a revocation while stopping neither sends nor commits
        return consumer

    assert asyncio.run(scenario()).commits == []
