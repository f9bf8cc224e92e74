"""Envelopes: many events in one record, each accepted or dead-lettered on its own."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from tollguard.app.processor import RawRecord
from tollguard.engine.events import MAX_ENVELOPE_EVENTS, EnvelopeItemError, EventError

from .helpers import T0, parser, raw
from .test_state import processor


def envelope(*values: bytes) -> bytes:
    return b"[" + b",".join(values) + b"]"


def test_envelope_events_come_out_in_order_with_bad_ones_named() -> None:
    data = envelope(raw(call_id="a"), raw(call_id="b", callee="x"), b"7", raw(call_id="c"))
    items = parser().parse_envelope(data)
    assert [getattr(i, "call_id", None) for i in items] == ["a", None, None, "c"]
    bad = [i for i in items if isinstance(i, EnvelopeItemError)]
    assert [(b.index, b.reason) for b in bad] == [(1, "bad_number"), (2, "not_object")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[", "bad_json"),
        (b"[]", "not_object"),
        (b"[" + b",".join([b"{}"] * (MAX_ENVELOPE_EVENTS + 1)) + b"]", "oversize"),
    ],
)
def test_unusable_envelopes_are_rejected_whole(data: bytes, reason: str) -> None:
    with pytest.raises(EventError) as err:
        parser().parse_envelope(data)
    assert err.value.reason == reason


@pytest.mark.parametrize("wrap", [lambda x: [x], lambda x: {"a": x}], ids=["arrays", "objects"])
def test_nested_event_inside_an_envelope_is_oversize(wrap: Callable[[object], object]) -> None:
    nested: object = 1
    for _ in range(20):
        nested = wrap(nested)
    deep = orjson.dumps({**orjson.loads(raw(call_id="deep")), "x": nested})
    items = parser().parse_envelope(envelope(raw(call_id="ok"), deep))
    assert getattr(items[0], "call_id", None) == "ok"
    assert isinstance(items[1], EnvelopeItemError) and items[1].reason == "oversize"


def test_processor_takes_envelopes_and_single_events_alike() -> None:
    # The seed attack as envelopes of 10 calls to Sierra Leone, then one single event.
    calls = [
        raw(call_id=f"sl-{i}", ts=T0 + i * 25_000, callee=f"01023276{100000 + i}")
        for i in range(40)
    ]
    recs = [
        RawRecord("calls.events", 0, n, b"line-1", envelope(*calls[i : i + 10]))
        for n, i in enumerate(range(0, 40, 10))
    ]
    recs.append(RawRecord("calls.events", 0, 4, b"line-1", raw(call_id="last", ts=T0 + 10**6)))
    proc = processor()
    out = proc.process(recs, T0)
    assert [s.action for s in out.signals if s.action == "block"] == ["block"]
    assert proc.engine(0).stats.processed == 41
    assert proc.positions == {0: 5}


def test_bad_event_in_an_envelope_is_dead_lettered_alone() -> None:
    bad = raw(call_id="bad", ts="yesterday")
    data = envelope(raw(call_id="a"), bad, raw(call_id="b", ts=T0 + 1))
    proc = processor()
    out = proc.process([RawRecord("calls.events", 0, 7, b"k", data)], T0)
    assert proc.engine(0).stats.processed == 2
    [(_, letter)] = out.deadletter
    doc = orjson.loads(letter)
    assert (doc["reason"], doc["offset"], doc["index"]) == ("bad_timestamp", 7, 1)
    assert orjson.loads(doc["raw"]) == orjson.loads(bad)


def test_late_event_in_an_envelope_is_dead_lettered_with_its_own_content() -> None:
    data = envelope(raw(call_id="new", ts=T0 + 3_600_000), raw(call_id="old", ts=T0))
    out = processor().process([RawRecord("calls.events", 0, 0, b"k", data)], T0)
    [(_, letter)] = out.deadletter
    doc = orjson.loads(letter)
    assert doc["reason"] == "late"
    assert orjson.loads(doc["raw"])["call_id"] == "old"


def test_processor_learns_how_many_events_a_record_holds() -> None:
    # The detector sizes its fetches from this, so a loop of envelopes stays short:
    # before any record, as if each held the most an envelope may.
    proc = processor()
    assert proc.events_per_record == MAX_ENVELOPE_EVENTS
    calls = [raw(call_id=f"e{i}", ts=T0 + i) for i in range(200)]
    recs = [
        RawRecord("calls.events", 0, n, b"k", envelope(*calls[n * 10 : n * 10 + 10]))
        for n in range(20)
    ]
    for rec in recs:
        proc.process([rec], T0)
    assert 9 < proc.events_per_record < 11
    proc.process([RawRecord("calls.events", 0, 10, b"k", raw(call_id="single"))] * 20, T0)
    assert proc.events_per_record < 6


def test_a_late_event_is_dead_lettered_in_the_senders_schema() -> None:
    data = envelope(raw(call_id="new", ts=T0 + 3_600_000), raw(call_id="old", ts=T0, tenant="t1"))
    out = processor().process([RawRecord("calls.events", 0, 0, b"k", data)], T0)
    [(_, letter)] = out.deadletter
    sent = orjson.loads(orjson.loads(letter)["raw"])
    assert sent["ts"] == T0 and sent["tenant"] == "t1" and sent["callee"] == "0312345678"
    assert not {"ts_ms", "e164", "dest", "international"} & set(sent)  # nothing of ours


def test_refused_events_of_a_mixed_batch_are_each_dead_lettered_with_their_own_record() -> None:
    """A partition's records are decided in one engine call; a refusal still names its record."""
    hour = 3_600_000
    recs = [
        RawRecord("calls.events", 0, 0, b"k", envelope(raw(call_id="a", ts=T0 + hour))),
        RawRecord("calls.events", 0, 1, b"k", raw(call_id="late-single", ts=T0)),
        RawRecord("calls.events", 1, 0, b"k", envelope(raw(call_id="b", ts=T0 + hour))),
        RawRecord("calls.events", 1, 1, b"k", envelope(raw(call_id="late-p1", ts=T0))),
        RawRecord(
            "calls.events",
            0,
            2,
            b"k",
            envelope(raw(call_id="c", ts=T0 + hour + 1), raw(call_id="late-p0", ts=T0 + 5)),
        ),
        RawRecord("calls.events", 0, 3, b"k", raw(call_id="a", ts=T0 + hour)),  # re-sent
    ]
    proc = processor()
    out = proc.process(recs, T0)
    letters = [orjson.loads(letter) for _, letter in out.deadletter]
    seen = [(d["partition"], d["offset"], orjson.loads(d["raw"])["call_id"]) for d in letters]
    assert sorted(seen) == [(0, 1, "late-single"), (0, 2, "late-p0"), (1, 1, "late-p1")]
    assert all(d["reason"] == "late" for d in letters)
    assert proc.engine(0).stats.duplicates == 1
    assert proc.engine(0).stats.processed + proc.engine(1).stats.processed == 3
