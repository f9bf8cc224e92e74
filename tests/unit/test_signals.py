import jsonschema
import orjson
import pytest

from tollguard.engine import CountRule, Engine, RulePack
from tollguard.signals.model import ControlSignal
from tollguard.signals.schema import validate_control_signal

from .helpers import T0, event


def test_engine_signals_are_schema_valid_json() -> None:
    rule = CountRule(
        id="intl", window_ms=600_000, warning=2, critical=3, block_scope="destinations"
    )
    engine = Engine(RulePack("p", "v1", "JP", (rule,)))
    out: list[ControlSignal] = []
    for i in range(3):
        engine.process(event(f"01023276{100000 + i}", T0 + i * 1000), out)
    out.extend(engine.expire(T0 + 10**8))
    assert [s.action for s in out] == ["alert", "block", "unblock"]
    for s in out:
        doc = orjson.loads(s.encode(T0 + 5))
        validate_control_signal(doc)
    block = orjson.loads(out[1].encode(T0))
    assert block["event_ts"] == "2026-11-29T00:00:02.000Z"
    assert block["expires_at"] == "2026-11-29T01:00:02.000Z"
    assert block["evidence"]["destinations"] == {"+232": 3}


def test_schema_rejects_an_unknown_action() -> None:
    rule = CountRule(id="intl", window_ms=600_000, critical=1)
    engine = Engine(RulePack("p", "v1", "JP", (rule,)))
    out: list[ControlSignal] = []
    engine.process(event("01023276100000", T0), out)
    doc = orjson.loads(out[0].encode(T0))
    doc["action"] = "nuke"
    with pytest.raises(jsonschema.ValidationError):
        validate_control_signal(doc)
