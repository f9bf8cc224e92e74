"""Hostile rule packs: safe YAML only; size, nesting, expansion bounded; a bad pack never wins."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor
from tollguard.app.rules_follower import RulesFollower
from tollguard.config import load_settings
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.rulepacks import load_pack
from tollguard.rulepacks.loader import MAX_PACK_BYTES, RulePackError, load_pack_text
from tollguard.rulepacks.publish import decode_record

PACK = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def _rejected(text: str) -> str:
    with pytest.raises(RulePackError) as info:
        load_pack_text(text, "hostile.yaml")
    return str(info.value.problems[0])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (ALIAS_BOMB, "expands to more than"),
        ("[" * 5000 + "]" * 5000, "nests deeper"),
        ("a: " + "{x: " * 3000 + "1" + "}" * 3000, "nests deeper"),
        ("- " * 3000 + "x", "nests deeper"),
        ("x: " + "y" * (MAX_PACK_BYTES + 1), "larger than"),
        ("\ud800", "Unicode text"),
        ("!!python/object/apply:os.system ['touch /tmp/tollguard-pwned']", "hostile.yaml:1"),
        ("pack: !!python/name:os.system\n", "hostile.yaml"),
        ("\x00", "not valid YAML"),
    ],
)
def test_hostile_packs_are_rejected_with_a_reason(text: str, says: str) -> None:
    assert says in _rejected(text)
    assert not Path("/tmp/tollguard-pwned").exists()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_is_a_pack_or_a_rejection(text: str) -> None:
    try:
        load_pack_text(text, "fuzz.yaml")
    except RulePackError as exc:
        assert exc.problems


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_on_the_rules_topic_decode_to_a_pack_or_a_rejection(raw: bytes) -> None:
    record = decode_record(b"default", raw, 7)
    assert record is not None
    assert record.pack is not None or record.problems


def test_a_bad_pack_never_replaces_the_good_one() -> None:
    metrics = Metrics()
    good = load_pack(PACK)
    proc = BatchProcessor(good, load_default_dial_plans(), DestinationTable.load_default(), metrics)
    follower = RulesFollower(load_settings(env={}), proc, metrics, 0)
    for text in (ALIAS_BOMB, "[" * 5000 + "]" * 5000, "pack: {name: x}", "\xff"):
        assert not follower.apply(decode_record(b"default", text.encode(), 1))
        assert proc.pack is good
    assert follower.apply(decode_record(b"default", PACK.read_bytes(), 2))
