import math

import orjson
import pytest

from tollguard.engine.events import EventError, parse_timestamp

from .helpers import T0, parser, raw


def test_japanese_international_number_resolves_to_sierra_leone() -> None:
    ev = parser().parse(raw(callee="01023276123456"))
    assert ev.e164 == "+23276123456"
    assert ev.dest is not None and ev.dest.region == "SL"
    assert ev.international


def test_japanese_domestic_number_is_not_international() -> None:
    ev = parser().parse(raw(callee="0312345678"))
    assert ev.e164 == "+81312345678"
    assert not ev.international


def test_defaults_and_rfc3339_time() -> None:
    ev = parser().parse(raw(ts="2026-11-29T00:00:01.5+00:00", v=None))
    assert ev.type == "setup"
    assert ev.ts_ms == T0 + 1500


def test_unknown_fields_are_ignored() -> None:
    ev = parser().parse(raw(colour="blue", nested={"a": [1, 2]}))
    assert ev.call_id == "c1"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"[1, 2]", "not_object"),
        (raw(call_id=None), "missing_field"),
        (raw(line_id=None), "missing_field"),
        (raw(callee=None), "missing_field"),
        (raw(call_id=12), "bad_type"),
        (raw(call_id=""), "bad_value"),
        (raw(line_id="x" * 129), "bad_value"),
        (raw(callee="01023276abc"), "bad_number"),
        (raw(callee=1234), "bad_type"),
        (raw(ts="yesterday"), "bad_timestamp"),
        (raw(ts="2026-11-29T00:00:00"), "bad_timestamp"),
        (raw(ts=1_795_910_400), "bad_timestamp"),  # seconds, not milliseconds
        (raw(ts=True), "bad_timestamp"),
        (raw(type="hangup"), "bad_value"),
        (raw(v=2), "bad_version"),
        (raw(duration_s="30"), "bad_type"),
        (raw(duration_s=-1), "bad_value"),
    ],
)
def test_malformed_events_are_rejected_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(EventError) as info:
        parser().parse(data)
    assert info.value.reason == reason
    assert info.value.detail


def test_oversize_message_is_rejected_before_parsing() -> None:
    with pytest.raises(EventError) as info:
        parser().parse(b" " * (64 * 1024 + 1))
    assert info.value.reason == "oversize"


def test_answer_and_release_need_no_callee() -> None:
    ev = parser().parse(raw(type="release", callee=None, duration_s=31.5))
    assert ev.type == "release" and ev.duration_s == 31.5


def test_nan_duration_is_rejected() -> None:
    data = orjson.dumps({"call_id": "c", "ts": T0, "line_id": "l", "type": "release"})
    data = data[:-1] + b',"duration_s":NaN}'
    with pytest.raises(EventError):
        parser().parse(data)


def test_epoch_float_timestamp_accepted() -> None:
    assert parse_timestamp(float(T0) + 0.4) == T0
    with pytest.raises(EventError):
        parse_timestamp(math.inf)
