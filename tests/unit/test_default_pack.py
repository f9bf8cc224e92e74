"""The default pack against INCIDENTS.md: attacks blocked early, legitimate lines never."""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from tollguard.engine import Engine, RulePack
from tollguard.rulepacks import load_pack
from tollguard.signals.model import ControlSignal

from . import populations as pop
from .helpers import parser

REPO = Path(__file__).resolve().parents[2]


@cache
def default_pack() -> RulePack:
    return load_pack(REPO / "rules" / "default.yaml")


def replay(events: list[pop.Event], pack: RulePack | None = None) -> list[ControlSignal]:
    engine = Engine(pack or default_pack())
    out: list[ControlSignal] = []
    parse = parser("JP").from_dict
    for raw in events:
        event = parse(dict(raw))
        out.extend(engine.expire(event.ts_ms))
        engine.process(event, out)
    return out


def summary(signals: list[ControlSignal]) -> Counter[tuple[str, str | None]]:
    return Counter((s.action, s.rule_id) for s in signals)


@pytest.mark.parametrize(
    "population",
    [pop.call_centre, pop.hotel, pop.business_with_partners],
    ids=["call-centre", "hotel", "business-with-partners"],
)
def test_legitimate_populations_are_never_blocked(population: object) -> None:
    events = population()  # type: ignore[operator]
    signals = replay(events)
    blocks = [s for s in signals if s.action == "block" and s.mode == "enforce"]
    assert blocks == [], f"{summary(signals)}: {[b.reason for b in blocks][:3]}"


def test_seed_attack_on_a_fresh_line_is_blocked_within_20_calls() -> None:
    attack = pop.seed_attack("pbx-osaka-0042", pop.START + 30 * pop.HOUR)
    signals = replay(attack)
    block = next(s for s in signals if s.action == "block")
    setups = [e for e in attack if e["type"] == "setup"]
    assert block.event_ts is not None and block.event_ts <= int(setups[19]["ts"])  # type: ignore[call-overload]
    assert block.line_id == "pbx-osaka-0042" and block.rules_version == default_pack().version


def test_seed_attack_on_a_learned_line_is_blocked_within_20_calls_by_several_rules() -> None:
    line = "pbx-kobe-0007"
    history = pop.domestic_history(line, days=9)
    attack = pop.seed_attack(line, pop.START + 9 * pop.DAY + 2 * pop.HOUR, calls=200)
    signals = replay(pop.merge(history, attack))
    assert [s for s in signals if int(s.event_ts or 0) < pop.START + 9 * pop.DAY] == []
    block = next(s for s in signals if s.action == "block")
    setups = [e for e in attack if e["type"] == "setup"]
    assert int(block.event_ts or 0) <= int(setups[19]["ts"])  # type: ignore[call-overload]
    # Without the hot list the new-destination and spend signals still see it.
    rules = {s.rule_id for s in signals}
    assert {"hot-destinations", "new-destination"} <= rules


def test_seed_attack_without_the_hot_list_is_still_blocked() -> None:
    pack = default_pack()
    no_hot = RulePack(
        pack.name,
        pack.version,
        pack.dial_plan,
        tuple(r for r in pack.rules if r.id != "hot-destinations"),
    )
    line = "pbx-kobe-0008"
    history = pop.domestic_history(line, days=9)
    attack = pop.seed_attack(line, pop.START + 9 * pop.DAY + 2 * pop.HOUR, calls=200)
    signals = replay(pop.merge(history, attack), no_hot)
    block = next(s for s in signals if s.action == "block")
    setups = [e for e in attack if e["type"] == "setup"]
    assert int(block.event_ts or 0) <= int(setups[19]["ts"])  # type: ignore[call-overload]
    assert block.rule_id == "new-destination"
