"""Hostile events: whatever arrives, the event path never raises, and it says why it refused.

Property tests (hypothesis) over the parser and the batch processor, plus a
short run of `bench.fuzz_events` (the million-input version is
`python -m bench.fuzz_events --count 1000000`).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_events import good_event, new_processor, run
from tollguard.app.processor import RawRecord
from tollguard.engine.events import REJECT_REASONS, CallEvent, EventError, EventParser
from tollguard.numbering import DestinationTable, load_default_dial_plans

from .helpers import T0

PARSER = EventParser(load_default_dial_plans()["JP"], DestinationTable.load_default(), 4096, 16)
FIELDS = ["v", "type", "call_id", "ts", "line_id", "tenant", "caller", "callee"]
FIELDS += ["src_ip", "trunk_id", "duration_s"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.sampled_from(["0312345678", "01023276123456", "+232761234", "2026-11-29T00:00:00Z"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
events = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=12)


def _json_bytes(obj: dict[str, Any]) -> bytes:
    # json.dumps writes NaN/Infinity literals and integers of any size as they are.
    return json.dumps(obj).encode()


def _outcome(raw: bytes | None) -> CallEvent | str:
    try:
        return PARSER.parse(raw)
    except EventError as exc:
        assert exc.reason in REJECT_REASONS
        return exc.reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_rejected_with_a_known_reason(raw: bytes) -> None:
    _outcome(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_any_json_object_parses_or_is_rejected(obj: dict[str, Any]) -> None:
    # json.dumps writes NaN/Infinity literals and huge integers as they are.
    raw = json.dumps(obj).encode("utf-8", errors="surrogatepass")
    result = _outcome(raw)
    if isinstance(result, CallEvent):
        assert MIN_OK <= result.ts_ms < MAX_OK
        assert isinstance(result.call_id, str) and isinstance(result.line_id, str)


MIN_OK, MAX_OK = 946_684_800_000, 4_102_444_800_000

# Values at the length limits (64, 128, 256 characters), in any script.
near_limits = st.integers(0, 3).flatmap(
    lambda i: st.text(min_size=(62, 126, 254, 0)[i], max_size=(66, 130, 258, 3)[i])
)
spec_events = st.fixed_dictionaries(
    {"call_id": st.text(max_size=4) | near_limits, "line_id": st.text(max_size=4) | near_limits},
    optional={
        "ts": st.sampled_from([T0, T0 + 0.5, "2026-11-29T00:00:00Z", MIN_OK - 1, MAX_OK, True])
        | json_values,
        "callee": st.sampled_from(["0312345678", "01023276123456", "+232761234", "03-1234"])
        | near_limits
        | json_values,
        **{f: json_values | near_limits for f in FIELDS if f not in ("call_id", "line_id")},
        "e164": json_values,
        "international": json_values,
        "dest": json_values,
    },
)


def _slow_outcome(raw: bytes) -> CallEvent | str:
    try:
        return PARSER._parse_slowly(raw)  # the field-by-field reference path
    except EventError as exc:
        return exc.reason


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_events | events)
def test_the_fast_decoder_agrees_with_the_reference_path(obj: dict[str, Any]) -> None:
    raw = json.dumps(obj).encode("utf-8", errors="surrogatepass")
    assert _outcome(raw) == _slow_outcome(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spec_events | events, min_size=1, max_size=6))
def test_envelopes_decode_as_the_reference_path_does(objs: list[dict[str, Any]]) -> None:
    raw = json.dumps(objs).encode("utf-8", errors="surrogatepass")
    try:
        fast: Any = PARSER.parse_envelope(raw)
    except EventError as exc:
        fast = exc.reason
    try:
        slow: Any = PARSER._parse_envelope_slowly(raw)
    except EventError as exc:
        slow = exc.reason
    assert fast == slow


DEEP_17 = b'{"call_id":"c","ts":1795910400000,"line_id":"l","x":' + b"[" * 17 + b"]" * 17 + b"}"
# Objects only, no array, on an otherwise valid event: msgspec alone would skip the field.
DEEP_OBJECTS_17 = (
    b'{"call_id":"c","ts":1795910400000,"line_id":"l","callee":"0312345678","x":'
    + b'{"a":' * 16
    + b"1"
    + b"}" * 16
    + b"}"
)


@settings(max_examples=300)
@given(
    st.sampled_from(FIELDS),
    st.one_of(
        st.just(b"NaN"),
        st.just(b"-Infinity"),
        st.just(b"1e400"),
        st.just(b"123456789012345678901234567890"),
        st.from_regex(rb"\A[0-9]{1,20}[a-z]{1,3}\Z"),
        st.from_regex(rb"\A\"[0-9a-zA-Z+ ]{0,30}\"\Z"),
        st.integers().map(lambda n: str(n).encode()),
    ),
)
def test_numbers_with_letters_nan_and_huge_numbers(name: str, literal: bytes) -> None:
    base = orjson.dumps({"call_id": "c", "ts": T0, "line_id": "l", "callee": "0312345678"})
    raw = base[:-1] + b', "' + name.encode() + b'": ' + literal + b"}"
    _outcome(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"call_id":"c","ts":1795910400000,"line_id":"l\xff","callee":"0312345678"}', "bad_json"),
        (b'{"call_id":"c","ts":NaN,"line_id":"l","callee":"0312345678"}', "bad_json"),
        (b'{"call_id":"c","ts":1e400,"line_id":"l","callee":"0312345678"}', "bad_json"),
        (b'{"call_id":"c","ts":-5,"line_id":"l","callee":"0312345678"}', "bad_timestamp"),
        (b'{"call_id":"c","ts":1e30,"line_id":"l","callee":"0312345678"}', "bad_timestamp"),
        (
            b'{"call_id":"c","ts":"0001-01-01T00:00:00+14:00","line_id":"l","callee":"03123"}',
            "bad_timestamp",
        ),
        (b'{"call_id":"c","ts":1795910400000,"line_id":"l","callee":"03abc45678"}', "bad_number"),
        (DEEP_17, "oversize"),
        (DEEP_OBJECTS_17, "oversize"),
        (b"[" * 5000 + b"]" * 5000, "oversize"),
        (b'{"pad":"' + b"9" * 5000 + b'"}', "oversize"),
    ],
)
def test_named_hostile_inputs(raw: bytes, reason: str) -> None:
    assert _outcome(raw) == reason


def test_depth_limit_is_configurable_and_wide_is_not_deep() -> None:
    plan, table = load_default_dial_plans()["JP"], DestinationTable.load_default()
    nested = {"call_id": "c", "ts": T0, "line_id": "l", "callee": "0312345678", "x": [[[1]]]}
    raw = orjson.dumps(nested)
    assert isinstance(EventParser(plan, table, max_depth=4).parse(raw), CallEvent)
    with pytest.raises(EventError) as info:
        EventParser(plan, table, max_depth=3).parse(raw)
    assert info.value.reason == "oversize"
    wide = dict(nested, x=[[] for _ in range(100)], y="{{{{[[[[")
    assert isinstance(EventParser(plan, table, max_depth=4).parse(orjson.dumps(wide)), CallEvent)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.binary(max_size=120), events.map(lambda e: json.dumps(e).encode())),
        max_size=40,
    )
)
def test_batches_mixing_good_and_hostile_lose_nothing_good(hostile: list[bytes]) -> None:
    proc = new_processor()
    records: list[RawRecord] = []
    goods = 0
    for i, raw in enumerate(hostile):
        # Hostile objects must not share lines or call ids with good events.
        records.append(RawRecord("calls.events", 0, len(records), b"h", raw.replace(b"good", b"g")))
        records.append(
            RawRecord("calls.events", 0, len(records), b"g", orjson.dumps(good_event(i)))
        )
        goods += 1
    out = proc.process(records, T0)
    accepted = sum(
        s.value
        for family in proc.metrics.registry.collect()
        if family.name == "tollguard_events"
        for s in family.samples
        if s.name.endswith("_total")
    )
    duplicates = proc.metrics.duplicates._value.get()
    assert accepted + duplicates + len(out.deadletter) == len(records)
    for _key, value in out.deadletter:
        letter = orjson.loads(value)
        assert letter["reason"] in REJECT_REASONS
        assert '"call_id":"good-' not in letter["raw"]
    assert accepted >= goods


def test_short_fuzz_run_of_the_bench() -> None:
    result = run(10_000, seed=11)
    assert result.ok, result.problems[:5]
    assert result.good > 0 and result.dead_letters > 0
    assert set(result.reasons) <= set(REJECT_REASONS)


def test_a_bad_number_inside_an_envelope_costs_only_its_own_verdict() -> None:
    """Good events keep the fast path's result; the bad one gets the reference verdict."""
    good = {"call_id": "c1", "ts": T0, "line_id": "l", "callee": "01023276123456"}
    short_code = {"call_id": "c2", "ts": T0, "line_id": "l", "callee": "110", "x": 1}
    no_callee = {"call_id": "c3", "ts": T0, "line_id": "l"}
    raw = orjson.dumps([good, short_code, {**good, "call_id": "c4"}, no_callee])
    fast = PARSER.parse_envelope(raw)
    assert fast == PARSER._parse_envelope_slowly(raw)
    assert [getattr(item, "reason", "ok") for item in fast] == [
        "ok",
        "bad_number",
        "ok",
        "missing_field",
    ]
    assert fast[1].item == short_code  # type: ignore[union-attr]  # as the sender wrote it
